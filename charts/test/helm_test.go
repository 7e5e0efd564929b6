package test

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/downloader"
	"helm.sh/helm/v3/pkg/getter"
	"helm.sh/helm/v3/pkg/lint/support"
	"helm.sh/helm/v3/pkg/releaseutil"
)

// kubeVersion is the Kubernetes version the charts are rendered for. A Helm
// built from source assumes v1.20.0 unless told, which would hide API
// problems of the versions clusters really run.
const kubeVersion = "1.31.0"

// releaseName and namespace of every rendering.
const (
	releaseName = "herald"
	namespace   = "herald"
)

// services are the four service charts, in dependency-build order.
var services = []string{"intake", "rules", "notification", "acknowledgement"}

// standalone are charts outside the umbrella (no library dependency).
var standalone = []string{"console"}

// charts are every chart, the library first and the umbrella last.
var charts = append(append([]string{"herald-lib"}, services...), "herald")

// chartsDir returns a prepared copy of ../ (every chart with its file://
// dependencies built into charts/, as `helm dependency build` does). It is
// built once per test binary and removed by TestMain.
var chartsDir = sync.OnceValues(func() (string, error) {
	dst, err := os.MkdirTemp("", "herald-charts-")
	if err != nil {
		return "", err
	}
	for _, c := range append(append([]string{}, charts...), standalone...) {
		if err := copyChart(filepath.Join("..", c), filepath.Join(dst, c)); err != nil {
			return dst, fmt.Errorf("copy chart %s: %w", c, err)
		}
	}
	for _, c := range append(append([]string{}, services...), "herald") {
		if err := buildDependencies(dst, c); err != nil {
			return dst, fmt.Errorf("build dependencies of chart %s: %w", c, err)
		}
	}
	return dst, nil
})

func TestMain(m *testing.M) {
	code := m.Run()
	if dir, _ := chartsDir(); dir != "" {
		_ = os.RemoveAll(dir)
	}
	os.Exit(code)
}

// preparedCharts returns chartsDir or fails the test.
func preparedCharts(t *testing.T) string {
	t.Helper()
	dir, err := chartsDir()
	if err != nil {
		t.Fatalf("prepare charts: %v", err)
	}
	return dir
}

// copyChart copies a chart directory, leaving out anything a local
// `helm dependency build` may have left (charts/, Chart.lock, packages).
func copyChart(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if rel == "charts" || rel == "Chart.lock" || strings.HasSuffix(rel, ".tgz") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
}

// buildDependencies is `helm dependency update` of root/name, offline: every
// dependency is a file:// chart next to it.
func buildDependencies(root, name string) error {
	settings := cli.New()
	m := &downloader.Manager{
		Out:              io.Discard,
		ChartPath:        filepath.Join(root, name),
		SkipUpdate:       true,
		Getters:          getter.All(settings),
		RepositoryConfig: filepath.Join(root, ".helm", "repositories.yaml"),
		RepositoryCache:  filepath.Join(root, ".helm", "cache"),
	}
	return m.Update()
}

// lint runs `helm lint --kube-version` on a chart with the given values files
// and returns every message of severity warning or worse.
func lint(t *testing.T, chart string, valueFiles ...string) []string {
	t.Helper()
	root := preparedCharts(t)
	vals, err := (&values.Options{ValueFiles: valueFiles}).MergeValues(getter.All(cli.New()))
	if err != nil {
		t.Fatalf("read values %v: %v", valueFiles, err)
	}
	l := action.NewLint()
	l.Namespace = namespace
	l.KubeVersion = mustKubeVersion(t)
	res := l.Run([]string{filepath.Join(root, chart)}, vals)
	var problems []string
	for _, msg := range res.Messages {
		if msg.Severity >= support.WarningSev {
			problems = append(problems, msg.Error())
		}
	}
	for _, err := range res.Errors {
		problems = append(problems, err.Error())
	}
	sort.Strings(problems)
	return compact(problems)
}

func compact(s []string) []string {
	var out []string
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

func mustKubeVersion(t *testing.T) *chartutil.KubeVersion {
	t.Helper()
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatalf("parse kube version %s: %v", kubeVersion, err)
	}
	return kv
}

// renderOpts are the inputs of one `helm template`.
type renderOpts struct {
	chart      string
	valueFiles []string
	// sets are --set values; setJSON are --set-json values.
	sets    []string
	setJSON []string
	// setFile are --set-file values (key=path).
	setFile []string
}

// render is `helm template herald <chart> --namespace herald --kube-version
// 1.31.0 -f ... --set ...`: it validates the values against the charts'
// schemas and returns the rendered manifests by source file.
func render(t *testing.T, o renderOpts) (map[string]string, error) {
	t.Helper()
	root := preparedCharts(t)
	ch, err := loader.Load(filepath.Join(root, o.chart))
	if err != nil {
		t.Fatalf("load chart %s: %v", o.chart, err)
	}
	if deps := ch.Metadata.Dependencies; deps != nil {
		if err := action.CheckDependencies(ch, deps); err != nil {
			t.Fatalf("chart %s: %v", o.chart, err)
		}
	}
	opts := values.Options{ValueFiles: o.valueFiles, Values: o.sets, JSONValues: o.setJSON, FileValues: o.setFile}
	vals, err := opts.MergeValues(getter.All(cli.New()))
	if err != nil {
		return nil, fmt.Errorf("values: %w", err)
	}
	inst := action.NewInstall(&action.Configuration{Log: func(string, ...interface{}) {}})
	inst.DryRun = true
	inst.DryRunOption = "true"
	inst.ClientOnly = true
	inst.Replace = true
	inst.ReleaseName = releaseName
	inst.Namespace = namespace
	inst.KubeVersion = mustKubeVersion(t)
	rel, err := inst.Run(ch, vals)
	if err != nil {
		return nil, err
	}
	if rel == nil {
		return nil, errors.New("no release rendered")
	}
	if len(rel.Hooks) > 0 {
		t.Errorf("chart %s renders %d hooks; the charts use none", o.chart, len(rel.Hooks))
	}
	return releaseutil.SplitManifests(rel.Manifest), nil
}

// mustRender is render for values that must be accepted.
func mustRender(t *testing.T, o renderOpts) map[string]string {
	t.Helper()
	m, err := render(t, o)
	if err != nil {
		t.Fatalf("helm template %s %v %v: %v", o.chart, o.valueFiles, o.sets, err)
	}
	return m
}

// ciValues is the path of a values file of the umbrella chart's ci/ directory.
func ciValues(t *testing.T, name string) string {
	t.Helper()
	return filepath.Join(preparedCharts(t), "herald", "ci", name)
}
