package allinone

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// writeFastBundles copies the demo bundles into dir with every policy
// timeout and category clock divided by speedup, so that escalation ladders
// meant for minutes and hours play out in seconds. Everything else in the
// bundles is unchanged.
func writeFastBundles(src fs.FS, dir string, speedup int) error {
	return fs.WalkDir(src, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dir, path)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := fs.ReadFile(src, path)
		if err != nil {
			return err
		}
		if strings.HasSuffix(path, ".yaml") {
			if b, err = speedUp(b, speedup); err != nil {
				return fmt.Errorf("speed up %s: %w", path, err)
			}
		}
		return os.WriteFile(target, b, 0o644)
	})
}

// speedUp rewrites the durations under "timeout" and "failsafe_reminder"
// keys and "clocks" maps, and marks the bundle's version, since a version
// names one content.
func speedUp(doc []byte, speedup int) ([]byte, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil {
		return nil, err
	}
	var walk func(n *yaml.Node, inClocks bool) error
	walk = func(n *yaml.Node, inClocks bool) error {
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				if v.Kind == yaml.ScalarNode && k.Value == "version" && !inClocks {
					v.Value = fmt.Sprintf("%s-x%d", v.Value, speedup)
					continue
				}
				if v.Kind == yaml.ScalarNode && (k.Value == "timeout" || k.Value == "failsafe_reminder" || inClocks) {
					d, err := parseDuration(v.Value)
					if err != nil {
						return fmt.Errorf("line %d: %w", v.Line, err)
					}
					v.Value = (d / time.Duration(speedup)).String()
					continue
				}
				if err := walk(v, k.Value == "clocks"); err != nil {
					return err
				}
			}
			return nil
		}
		for _, c := range n.Content {
			if err := walk(c, false); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(&root, false); err != nil {
		return nil, err
	}
	return yaml.Marshal(&root)
}

// parseDuration accepts Go durations and a whole number of days ("2d").
func parseDuration(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil {
			return 0, fmt.Errorf("duration %q: %w", s, err)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}
