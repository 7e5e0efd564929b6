package ackhttp

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/acklink"
	"github.com/herald-health/herald/platform/clock"
	"github.com/stretchr/testify/require"
)

func sessionHandler(clk clock.Clock) *Handler {
	return &Handler{cookie: bytes.Repeat([]byte("s"), 32), clk: clk, issuer: "https://idp.example",
		cfg: Config{SessionIdle: 15 * time.Minute, SessionMax: 8 * time.Hour, MinACR: "AAL2_OR_ABOVE",
			ACRLevels: []string{"AAL1_USERPASS", "AAL2_OR_ABOVE", "AAL3_ANY"}}}
}

// request carries the session cookie the last response set.
func request(cookie *http.Cookie) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/ack/x", nil)
	if cookie != nil {
		r.AddCookie(cookie)
	}
	return r
}

func lastCookie(w *httptest.ResponseRecorder) *http.Cookie {
	cs := w.Result().Cookies()
	if len(cs) == 0 {
		return nil
	}
	return cs[len(cs)-1]
}

// A page session ends after 15 minutes without use, is renewed by use, and
// ends 8 hours after sign-in however much it is used; it names the issuer,
// subject and assurance level of the sign-in.
func TestSessionIsShortRenewableAndBounded(t *testing.T) {
	start := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	clk := clock.NewSimulated(start)
	h := sessionHandler(clk)
	w := httptest.NewRecorder()
	h.setSession(w, session{person: "dr-a", subject: "sub-a", name: "Dr A", acr: "AAL3_ANY", created: start, last: start})
	ck := lastCookie(w)

	a, ok := h.identify(nil, request(ck), acklink.Claims{})
	require.True(t, ok)
	require.Equal(t, "dr-a", a.GetPersonId())
	require.Equal(t, "sub-a", a.GetSubject())
	require.Equal(t, "AAL3_ANY", a.GetAcr())
	require.Equal(t, "https://idp.example", a.GetIssuer())

	// Idle: 15 minutes without use ends it.
	clk.Advance(15 * time.Minute)
	_, ok = h.identify(nil, request(ck), acklink.Claims{})
	require.False(t, ok, "an idle session still identified")

	// Used every 10 minutes, it lives on, renewed ...
	clk = clock.NewSimulated(start)
	h.clk = clk
	for range 47 { // 7 h 50 min
		clk.Advance(10 * time.Minute)
		w := httptest.NewRecorder()
		_, ok := h.identify(w, request(ck), acklink.Claims{})
		require.True(t, ok, "a session in use ended at %v", clk.Now().Sub(start))
		if c := lastCookie(w); c != nil {
			ck = c
		}
	}
	// ... but not past 8 hours since sign-in.
	clk.Advance(10 * time.Minute)
	_, ok = h.identify(httptest.NewRecorder(), request(ck), acklink.Claims{})
	require.False(t, ok, "a session outlived its maximum")
}

func TestLogoutEndsTheSession(t *testing.T) {
	h := sessionHandler(clock.Real{})
	w := httptest.NewRecorder()
	h.logout(w, httptest.NewRequest(http.MethodPost, "/auth/logout", nil))
	ck := lastCookie(w)
	require.NotNil(t, ck)
	require.Equal(t, sessionCookie, ck.Name)
	require.Negative(t, ck.MaxAge)
	require.Empty(t, ck.Value)
}

func TestPageSignInNeedsTheAssuranceLevel(t *testing.T) {
	h := sessionHandler(clock.Real{})
	require.False(t, h.acrEnough(""))
	require.False(t, h.acrEnough("AAL1_USERPASS"))
	require.False(t, h.acrEnough("made-up"))
	require.True(t, h.acrEnough("AAL2_OR_ABOVE"))
	require.True(t, h.acrEnough("AAL3_ANY"))
}

// The session key is the page's own: the link secret does not seal or
// open a session.
func TestSessionKeyIsNotTheLinkSecret(t *testing.T) {
	_, err := New(t.Context(), Config{OIDCIssuer: "http://127.0.0.1:1"}, nil, nil, clock.Real{}, nil)
	require.ErrorContains(t, err, "session key")
}
