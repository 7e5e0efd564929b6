package acknowledgement_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/herald-health/herald/platform/acklink"
	"github.com/herald-health/herald/platform/alertref"
	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/testinfra"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	"github.com/herald-health/herald/services/acknowledgement/internal/app"
	"github.com/oauth2-proxy/mockoidc"
	"github.com/stretchr/testify/require"
)

// token signs a link with the private key in keyFile (the one the
// notification service would hold).
func token(t *testing.T, keyFile, alertID, person string, ttl time.Duration) (string, acklink.Claims) {
	t.Helper()
	c := acklink.Claims{TokenID: eventlog.ID(alertID, person, "tok"), AlertID: alertID, NotificationID: "n1", PersonID: person, Step: 0,
		ExpiresAt: time.Now().Add(ttl)}
	s, err := acklink.LoadSigner(keyFile)
	require.NoError(t, err)
	tok, err := s.Sign(c)
	require.NoError(t, err)
	return tok, c
}

func do(t *testing.T, c *http.Client, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	require.NoError(t, err)
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, "no-referrer", resp.Header.Get("Referrer-Policy"))
	return resp.StatusCode, string(b)
}

// TestAcknowledgeByLinkDevIdentity: the page shows the reference, category
// and deadline and no patient data; POST acknowledges once; the token is
// single use, expiring and tamper-evident.
func TestAcknowledgeByLinkDevIdentity(t *testing.T) {
	e := newEnv(t)
	r := e.start("r1", app.Hooks{})
	id := newAlertID("link")
	e.append(context.Background(), raisedEvent(id), routedEvent(id, nil, time.Hour))
	e.waitState(r.client, id, ackv1.State_STATE_ROUTED, 30*time.Second)
	base := "http://" + r.svc.Addrs()["http"]
	tok, _ := token(t, e.keys.PrivateKeyFile, id, "dr-link", time.Hour)
	c := &http.Client{}

	code, body := do(t, c, http.MethodGet, base+"/ack/"+tok)
	require.Equal(t, http.StatusOK, code)
	// The one reference, keyed, also in the API's state.
	refs, err := alertref.New([]byte(referenceKey))
	require.NoError(t, err)
	ref := refs.Ref(id)
	require.Contains(t, body, ref)
	require.NotContains(t, strings.ToUpper(body), strings.ToUpper(id[:10]), "the page shows the alert id")
	got, err := r.client.GetAlert(context.Background(), &ackv1.GetAlertRequest{AlertId: id})
	require.NoError(t, err)
	require.Equal(t, ref, got.GetState().GetAccessionRef())
	require.Contains(t, body, "CRITICAL")
	require.Contains(t, body, "Respond by")
	require.Contains(t, body, "Acknowledge as dr-link")
	requireNoPatientData(t, body)

	code, body = do(t, c, http.MethodPost, base+"/ack/"+tok)
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, "Acknowledged")
	st := e.waitState(r.client, id, ackv1.State_STATE_ACKNOWLEDGED, 10*time.Second)
	require.Equal(t, "dr-link", st.GetState().GetAcknowledgedBy().GetPersonId())
	require.Equal(t, "dev", st.GetState().GetAcknowledgedBy().GetIdentityProvider())

	code, _ = do(t, c, http.MethodPost, base+"/ack/"+tok)
	require.Equal(t, http.StatusConflict, code, "single use")

	expired, _ := token(t, e.keys.PrivateKeyFile, id, "dr-link", -time.Minute)
	code, _ = do(t, c, http.MethodGet, base+"/ack/"+expired)
	require.Equal(t, http.StatusGone, code)
	// A link signed by a key the service does not trust (a forger's, or
	// one retired after a rotation) is refused, and nothing is recorded.
	other, err := acklink.GenerateFiles(t.TempDir())
	require.NoError(t, err)
	forged, _ := token(t, other.PrivateKeyFile, id, "dr-link", time.Hour)
	code, _ = do(t, c, http.MethodPost, base+"/ack/"+forged)
	require.Equal(t, http.StatusNotFound, code)
	require.Contains(t, e.logs.String(), "unknown signing key")
	requireNoPatientData(t, e.logs.String())
	require.NotContains(t, e.logs.String(), tok, "tokens are never logged")
}

// TestAcknowledgeByLinkOIDC logs in through an in-process OpenID Connect
// provider (authorization-code flow) before the acknowledgement is recorded.
func TestAcknowledgeByLinkOIDC(t *testing.T) {
	m, err := mockoidc.Run()
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Shutdown() })
	e := newEnv(t)
	addr := testinfra.FreePort(t)
	e.cfg.HTTPAddr = addr
	e.cfg.PublicURL = "http://" + addr
	e.cfg.DevIdentity = ""
	e.cfg.Authn.Issuer = m.Issuer()
	e.cfg.OIDCClientID, e.cfg.OIDCClientSecret = m.ClientID, m.ClientSecret
	e.cfg.SessionKey = strings.Repeat("session-key-", 4)
	r := e.start("r1", app.Hooks{})
	id := newAlertID("oidc")
	e.append(context.Background(), raisedEvent(id), routedEvent(id, nil, time.Hour))
	e.waitState(r.client, id, ackv1.State_STATE_ROUTED, 30*time.Second)
	base := e.cfg.PublicURL
	tok, _ := token(t, e.keys.PrivateKeyFile, id, "dr-oidc", time.Hour)
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	c := &http.Client{Jar: jar}

	code, body := do(t, c, http.MethodGet, base+"/ack/"+tok)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "Sign in and acknowledge")
	requireNoPatientData(t, body)

	// A sign-in below the assurance level acknowledging needs: refused.
	m.QueueUser(acrUser{&mockoidc.MockUser{Subject: "dr-oidc"}, "AAL1_USERPASS"})
	code, body = do(t, c, http.MethodPost, base+"/ack/"+tok)
	require.Equal(t, http.StatusForbidden, code, body)
	require.Contains(t, body, "Stronger sign-in needed")

	// Someone else signs in: refused, nothing recorded.
	m.QueueUser(acrUser{&mockoidc.MockUser{Subject: "dr-other"}, "AAL3_ANY"})
	code, body = do(t, c, http.MethodPost, base+"/ack/"+tok)
	require.Equal(t, http.StatusOK, code, body) // back on the page after login
	require.Contains(t, body, "Acknowledge as dr-other")
	code, _ = do(t, c, http.MethodPost, base+"/ack/"+tok)
	require.Equal(t, http.StatusForbidden, code)

	// The recipient signs in and acknowledges.
	jar2, err := cookiejar.New(nil)
	require.NoError(t, err)
	c2 := &http.Client{Jar: jar2}
	m.QueueUser(acrUser{&mockoidc.MockUser{Subject: "dr-oidc"}, "AAL3_ANY"})
	code, body = do(t, c2, http.MethodPost, base+"/ack/"+tok)
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, "Acknowledge as dr-oidc")
	code, body = do(t, c2, http.MethodPost, base+"/ack/"+tok)
	require.Equal(t, http.StatusOK, code, body)
	st := e.waitState(r.client, id, ackv1.State_STATE_ACKNOWLEDGED, 10*time.Second)
	require.Equal(t, "dr-oidc", st.GetState().GetAcknowledgedBy().GetPersonId())
	by := st.GetState().GetAcknowledgedBy()
	require.Equal(t, "oidc", by.GetIdentityProvider())
	require.Equal(t, m.Issuer(), by.GetIssuer())
	require.Equal(t, "dr-oidc", by.GetSubject())
	require.Equal(t, "AAL3_ANY", by.GetAcr())
	require.Equal(t, []string{"link:" + eventlog.ID(id, "dr-oidc", "tok")}, requestIDs(st, "AlertAcknowledged"))
}

func requestIDs(st *ackv1.GetAlertResponse, typ string) []string {
	var out []string
	for _, en := range st.GetTimeline() {
		if en.GetType() == typ {
			out = append(out, en.GetRequestId())
		}
	}
	return out
}

// acrUser is a mockoidc user whose ID token asserts an assurance level.
type acrUser struct {
	*mockoidc.MockUser
	acr string
}

type acrClaims struct {
	*mockoidc.IDTokenClaims
	ACR string `json:"acr"`
}

func (u acrUser) Claims(_ []string, c *mockoidc.IDTokenClaims) (jwt.Claims, error) {
	return acrClaims{c, u.acr}, nil
}
