package ackhttp

import (
	"bytes"
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
	for _, bad := range []string{"", ".", "x.y", h.seal("dr-a|1")[1:], h.seal("dr-a|1") + "x"} {
		_, ok := h.open(bad)
		require.False(t, ok, bad)
	}
}

// FuzzOpen: a hostile cookie never panics and never opens unless sealed.
func FuzzOpen(f *testing.F) {
	h := testHandler()
	f.Add(h.seal("dr-a|1700000000"))
	f.Add("")
	f.Add("a.b")
	f.Fuzz(func(t *testing.T, s string) {
		v, ok := h.open(s)
		if ok {
			// Only a sealed value opens (base64 may be written more than
			// one way, the value and its MAC may not).
			again, ok2 := h.open(h.seal(v))
			require.True(t, ok2)
			require.Equal(t, v, again)
		}
	})
}
