// Package bundle parses, validates and compiles a trust's policy bundle: the
// YAML files that say how the trust classifies alerts (categories, their
// clocks, CEL classification rules), how it escalates them (ordered policies
// of steps and targets) and who its people are (directory, teams, contact
// points and rotas in the trust's local time).
//
// A bundle is one tenant's set of files. Every file may hold any of the
// top-level sections; lists are concatenated in file-name order and scalars
// (tenant, version, ...) must agree where two files both set them. Parse
// either returns a compiled, immutable *Bundle or a *ValidationError listing
// every problem with the file, the path inside it (for example
// policies[2].steps[0].timeout) and what is wrong, so a broken bundle never
// replaces a running one.
//
// The package is pure: no I/O besides what the caller hands it, no clocks.
package bundle
