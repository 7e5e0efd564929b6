// Package devbindings is the development role-binding file (make run, the
// e2e suites): synthetic people of the two demo trusts and, for the
// development profile only, the tools' certificates.
package devbindings

import (
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

//go:embed role-bindings.yaml
var file string

// Bindings returns the development role-binding file; without tools, its
// people only (what the production profile accepts).
func Bindings(tools bool) []byte {
	if tools {
		return []byte(file)
	}
	people, _, _ := strings.Cut(file, "\nservices:\n")
	return []byte(people + "\n")
}

// Write writes Bindings(tools) into dir and returns the file's path.
func Write(dir string, tools bool) (string, error) {
	path := filepath.Join(dir, "role-bindings.yaml")
	if err := os.WriteFile(path, Bindings(tools), 0o644); err != nil {
		return "", fmt.Errorf("write the development role bindings: %w", err)
	}
	return path, nil
}
