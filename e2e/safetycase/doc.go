// Package safetycase checks the clinical safety case against the code: the
// hazard log (docs/safety/hazard-log.md) may cite only tests that exist, and
// every hazard must have at least one mitigation that a test proves. It has
// no production code; its tests run in `make test` with the rest of e2e.
package safetycase
