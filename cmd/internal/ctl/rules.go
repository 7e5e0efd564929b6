package ctl

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	rulesv1 "github.com/herald-health/herald/proto/gen/herald/rules/v1"
)

// openRules parses a rules subcommand's flags and arguments (args without
// the subcommand), dials rules at *addr, which the flags may have set, and
// bounds the call with the command timeout. done releases the connection and
// the timeout; it is nil when err is not.
func openRules(ctx context.Context, e *env, fs *flag.FlagSet, addr *string, args []string) (context.Context, rulesv1.RulesServiceClient, func(), error) {
	if err := parseArgs(fs, args); err != nil {
		return nil, nil, nil, err
	}
	conn, err := e.dial(*addr)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := timeout(ctx)
	done := func() {
		cancel()
		_ = conn.Close()
	}
	return ctx, rulesv1.NewRulesServiceClient(conn), done, nil
}

// bundleArg reads the one bundle the command names: a YAML file, or a
// directory of them (read recursively). It returns the path as given.
func bundleArg(fs *flag.FlagSet) (string, []*rulesv1.BundleFile, error) {
	path, err := oneArg(fs, "bundle file or directory")
	if err != nil {
		return "", nil, err
	}
	info, err := os.Stat(path)
	if err != nil {
		return "", nil, fmt.Errorf("read bundle %s: %w", path, err)
	}
	if !info.IsDir() {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", nil, fmt.Errorf("read bundle %s: %w", path, err)
		}
		return path, []*rulesv1.BundleFile{{Name: filepath.Base(path), Content: b}}, nil
	}
	files, err := bundleDir(path)
	return path, files, err
}

// bundleDir reads every .yaml or .yml file under dir, named relative to it.
func bundleDir(dir string) ([]*rulesv1.BundleFile, error) {
	var files []*rulesv1.BundleFile
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if ext := filepath.Ext(path); ext != ".yaml" && ext != ".yml" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		files = append(files, &rulesv1.BundleFile{Name: rel, Content: b})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read bundle %s: %w", dir, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no .yaml files in %s", dir)
	}
	return files, nil
}
