package oidcauth

import "testing"

// After sign-in the person returns only to a page of the console: a
// crafted return address cannot send them (and their fresh session) to
// another site.
func TestSafeReturnKeepsOnlyLocalPaths(t *testing.T) {
	for in, want := range map[string]string{
		"/alerts/a1?done=acknowledged": "/alerts/a1?done=acknowledged",
		"/worklist":                    "/worklist",
		"":                             "/",
		"https://evil.example/":        "/",
		"//evil.example/x":             "/",
		"/\\evil.example":              "/",
		"javascript:alert(1)":          "/",
		"alerts/a1":                    "/",
	} {
		if got := SafeReturn(in); got != want {
			t.Errorf("SafeReturn(%q) = %q, want %q", in, got, want)
		}
	}
}
