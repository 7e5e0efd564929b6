// Package test holds the tests of Herald's Helm charts (../herald-lib,
// ../intake, ../rules, ../notification, ../acknowledgement and the umbrella
// ../herald). The tests use the Helm Go SDK (helm.sh/helm/v3), the library
// behind `helm lint` and `helm template`, so no helm binary is needed: they
// build the charts' file:// dependencies in a temporary copy, lint every
// chart, render the umbrella chart for its default, minimal and
// national-scale values (ci/*.yaml) at a fixed Kubernetes version, decode
// every manifest strictly into k8s.io/api types, check the shape of each
// service (probes, securityContext, NetworkPolicy flows, PDB, HPA, topics)
// and check that values violating the schemas are refused.
//
// Run them with `cd charts/test && go test ./...`. The same module pins the
// helm command as a Go tool: `go tool helm lint ../herald`.
package test
