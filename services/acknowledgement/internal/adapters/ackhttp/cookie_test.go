package ackhttp

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func testHandler() *Handler {
	return &Handler{cookie: bytes.Repeat([]byte("c"), 32)}
}

func TestSealOpen(t *testing.T) {
	h := testHandler()
	v, ok := h.open(h.seal("dr-a|1700000000"))
	require.True(t, ok)
	require.Equal(t, "dr-a|1700000000", v)
	other := &Handler{cookie: bytes.Repeat([]byte("d"), 32)}
	_, ok = other.open(h.seal("dr-a|1700000000"))
	require.False(t, ok, "a cookie sealed with another key does not open")
	good := h.seal("dr-a|1")
	p, sig, _ := strings.Cut(good, ".")
	for _, bad := range []string{"", ".", "x.y", good[1:], good + "x",
		p + "." + sig[:5] + "\r\n" + sig[5:], // base64 with a line break: the same bytes, spelled otherwise
	} {
		_, ok := h.open(bad)
		require.False(t, ok, bad)
	}
}

// FuzzOpen: a hostile cookie never panics, and opens only if it is, byte
// for byte, the sealing of a value that was sealed: neither a value the key
// did not seal nor another spelling of a sealed cookie opens.
func FuzzOpen(f *testing.F) {
	h := testHandler()
	sealed := map[string]bool{}
	for _, v := range []string{"dr-a|1700000000", "state|nonce|/ack/tok", ""} {
		sealed[v] = true
		f.Add(h.seal(v))
	}
	f.Add(strings.Replace(h.seal("dr-a|1700000000"), ".", ".\n", 1)) // another spelling
	f.Add("")
	f.Add("a.b")
	f.Fuzz(func(t *testing.T, s string) {
		v, ok := h.open(s)
		if !ok {
			require.Empty(t, v)
			return
		}
		if !sealed[v] {
			t.Fatalf("open(%q) gave %q, a value that was never sealed", s, v)
		}
		if want := h.seal(v); s != want {
			t.Fatalf("open accepted %q, another spelling of the cookie %q", s, want)
		}
	})
}
