package test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// repoRoot is the repository root, seen from charts/test.
const repoRoot = "../.."

// dockerInstructions returns a Dockerfile's instructions, continuation lines
// joined and comments dropped.
func dockerInstructions(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var out []string
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			cur.WriteString(strings.TrimSuffix(line, `\`) + " ")
			continue
		}
		cur.WriteString(line)
		out = append(out, strings.Join(strings.Fields(cur.String()), " "))
		cur.Reset()
	}
	require.NoError(t, sc.Err())
	return out
}

// No image can be built on these machines, so the Dockerfiles are checked on
// paper: a golang:1.26 builder (pinned by digest, compiling with the
// workspace's toolchain) making a static binary of the service's cmd, then
// distroless static (pinned by digest) as the nonroot user running that
// binary; the
// ports it declares are the chart's; and the minimal workspace it builds in
// (proto, platform, the service) holds every Herald package the binary
// imports.
func TestDockerfiles(t *testing.T) {
	for _, svc := range services {
		t.Run(svc, func(t *testing.T) {
			ins := dockerInstructions(t, filepath.Join(repoRoot, "services", svc, "Dockerfile"))
			var froms []string
			for _, in := range ins {
				if strings.HasPrefix(in, "FROM ") {
					froms = append(froms, in)
				}
			}
			require.Len(t, froms, 2)
			require.Regexp(t, `^FROM golang:1\.26@sha256:[0-9a-f]{64} AS build$`, froms[0], "the builder is pinned by digest")
			require.Regexp(t, `^FROM gcr\.io/distroless/static-debian12:nonroot@sha256:[0-9a-f]{64}$`, froms[1], "the runtime image is pinned by digest")
			require.Contains(t, ins, "ENV CGO_ENABLED=0 GOOS=linux GOTOOLCHAIN="+workspaceToolchain(t), "the image builds with the workspace's toolchain")
			require.Contains(t, ins, "RUN go work init ./proto ./platform ./services/"+svc+" && go mod download")
			require.Contains(t, ins, `RUN go build -trimpath -ldflags="-s -w" -o /out/`+svc+" ./services/"+svc+"/cmd/"+svc)
			require.Contains(t, ins, "COPY --from=build /out/"+svc+" /usr/local/bin/"+svc)
			require.Equal(t, "USER nonroot", ins[len(ins)-3], "the last stage runs as nonroot")
			require.Equal(t, `ENTRYPOINT ["/usr/local/bin/`+svc+`"]`, ins[len(ins)-1])
			for _, in := range ins {
				if strings.HasPrefix(in, "COPY ") && !strings.Contains(in, "--from=") {
					for _, src := range strings.Fields(in)[1 : len(strings.Fields(in))-1] {
						_, err := os.Stat(filepath.Join(repoRoot, src))
						require.NoError(t, err, "COPY source %s", src)
					}
				}
			}

			var exposed []string
			for _, in := range ins {
				if strings.HasPrefix(in, "EXPOSE ") {
					exposed = strings.Fields(strings.TrimPrefix(in, "EXPOSE "))
				}
			}
			var chart struct {
				Ports map[string]int `json:"ports"`
			}
			b, err := os.ReadFile(filepath.Join("..", svc, "values.yaml"))
			require.NoError(t, err)
			require.NoError(t, yaml.Unmarshal(b, &chart))
			var ports []string
			for _, p := range chart.Ports {
				ports = append(ports, strconv.Itoa(p))
			}
			require.ElementsMatch(t, ports, exposed, "EXPOSE matches the chart's ports")

			cmd := exec.Command("go", "list", "-deps", "-f", "{{with .Module}}{{.Path}}{{end}}", "./services/"+svc+"/cmd/"+svc)
			cmd.Dir = repoRoot
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "go list: %s", out)
			allowed := []string{
				"github.com/herald-health/herald/proto",
				"github.com/herald-health/herald/platform",
				"github.com/herald-health/herald/services/" + svc,
			}
			for _, m := range strings.Fields(string(out)) {
				if strings.HasPrefix(m, "github.com/herald-health/herald") {
					require.True(t, slices.Contains(allowed, m), "%s imports module %s, which the Dockerfile's workspace lacks", svc, m)
				}
			}
		})
	}
}

// The shared defaults (global:) are the same in every chart, so a service
// chart installed on its own behaves as it does under the umbrella.
func TestGlobalDefaultsAgree(t *testing.T) {
	read := func(chart string) map[string]any {
		var v map[string]any
		b, err := os.ReadFile(filepath.Join("..", chart, "values.yaml"))
		require.NoError(t, err)
		require.NoError(t, yaml.Unmarshal(b, &v))
		return v["global"].(map[string]any)
	}
	want := read("herald")
	for _, svc := range services {
		require.Equal(t, want, read(svc), "global defaults of %s vs herald", svc)
	}
}

// workspaceToolchain is the toolchain line of go.work.
func workspaceToolchain(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "go.work"))
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "toolchain "); ok {
			return v
		}
	}
	t.Fatal("go.work has no toolchain line")
	return ""
}
