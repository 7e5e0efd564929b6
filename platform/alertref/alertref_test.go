package alertref_test

import (
	"strings"
	"testing"

	"github.com/herald-health/herald/platform/alertref"
)

func TestRefIsKeyedStableAndOfOneFormat(t *testing.T) {
	k1, err := alertref.New([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := alertref.New([]byte(strings.Repeat("j", 32)))
	id := "311c862b07d1a9f0e4c3b2a1908f7e6d"
	r := k1.Ref(id)
	if !alertref.Is(r) || !alertref.Is(strings.ToLower(r)) {
		t.Fatalf("reference %q does not have the reference format", r)
	}
	if r != k1.Ref(id) {
		t.Fatalf("reference not deterministic: %q then %q", r, k1.Ref(id))
	}
	if r == k2.Ref(id) {
		t.Fatalf("two keys gave the same reference %q: it is not keyed", r)
	}
	if strings.Contains(strings.ToLower(r), strings.ToLower(id[:4])) && strings.Contains(strings.ToLower(r), strings.ToLower(id[4:8])) {
		t.Fatalf("reference %q shows the alert id %s", r, id)
	}
	if k1.Ref(id) == k1.Ref("311c862b07d1a9f0e4c3b2a1908f7e6e") {
		t.Fatal("two alerts share a reference")
	}
}

func TestNewRefusesAShortKey(t *testing.T) {
	if _, err := alertref.New([]byte("short")); err == nil || !strings.Contains(err.Error(), "at least 32 bytes") {
		t.Fatalf("got %v, want an error naming the minimum length", err)
	}
}

func TestIs(t *testing.T) {
	for s, want := range map[string]bool{
		"HRD-0123-4567-89AB": true, "hrd-abcd-efgh-jkmn": true, "HRD-311C-862B-07D1": true,
		"311C-862B-07D1": false, "HRD-311C862B07": false, "HRD-ILOU-0000-0000": false, "": false,
	} {
		if got := alertref.Is(s); got != want {
			t.Errorf("Is(%q) = %v, want %v", s, got, want)
		}
	}
}
