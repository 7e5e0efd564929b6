package e2e

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/herald-health/herald/e2e/harness"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// startWith runs Herald with the e2e trust's bundle and extra settings.
func startWith(t *testing.T, env map[string][]string) *harness.System {
	t.Helper()
	b, err := os.ReadFile("testdata/bundle.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return harness.StartSystemWith(t, bins, []harness.Bundle{{Tenant: "RZZ", YAML: string(b)}}, harness.Options{Env: env})
}

// browse sends a request as a browser with a cookie jar does (following
// redirects) and returns the final status and page.
func browse(t *testing.T, c *http.Client, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func browser(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}} // no re-sent request: a verifier is single use
}

// The acknowledge link with the real login: the acknowledgement service
// runs without a development identity and signs people in at the
// system's OpenID provider (Ory Hydra as a process: authorization code
// with PKCE). A sign-in below the assurance level acknowledging needs is
// refused; a person who is not the link's recipient signs in and is
// refused; the recipient signs in and acknowledges; the escalation stops;
// signing out ends the session.
func TestAcknowledgeByLinkWithOpenIDConnectLogin(t *testing.T) {
	sys := startWith(t, map[string][]string{"acknowledgement": {"HERALD_DEV_IDENTITY="}})
	send(t, sys, oru("MSG-OIDC-1", "ACC-OIDC-1", "F", "CRITICAL"))
	id := alertIDOf(t, sys, 30*time.Second)
	link := ackLink(t, waitMail(t, sys, id, referrer, 30*time.Second))
	due := waitStepDue(t, sys, id, 0)

	// Nobody signed in: the page asks to sign in; acknowledging starts the
	// login instead of recording anything.
	anonymous := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	code, page := browse(t, anonymous, http.MethodGet, link)
	if code != http.StatusOK || !strings.Contains(page, "Sign in and acknowledge") {
		t.Fatalf("page without a session: HTTP %d\n%s", code, page)
	}
	resp, err := anonymous.Post(link, "application/x-www-form-urlencoded", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/auth/login") {
		t.Fatalf("acknowledge without a session: HTTP %d to %q, want 303 to the login", resp.StatusCode, loc)
	}

	// The referrer signs in with a password only (AAL1): refused.
	weak := browser(t)
	if code, page := signInPage(t, sys, weak, link, "e2e-referrer", "AAL1_USERPASS"); code != http.StatusForbidden || !strings.Contains(page, "Stronger sign-in needed") {
		t.Fatalf("an AAL1 sign-in: HTTP %d\n%s", code, page)
	}

	// The registrar signs in with the referrer's link: refused.
	other := browser(t)
	if code, page := signInPage(t, sys, other, link, "e2e-registrar", "AAL3_ANY"); code != http.StatusOK || !strings.Contains(page, "Acknowledge as e2e-registrar") {
		t.Fatalf("after the registrar's login: HTTP %d\n%s", code, page)
	}
	if code, page = browse(t, other, http.MethodPost, link); code != http.StatusForbidden {
		t.Fatalf("the registrar acknowledges the referrer's link: HTTP %d, want 403\n%s", code, page)
	}
	if st := getAlert(t, sys, id).GetState().GetState(); st == ackv1.State_STATE_ACKNOWLEDGED {
		t.Fatal("acknowledged by someone the link was not sent to")
	}

	// The referrer signs in and acknowledges.
	me := browser(t)
	if code, page := signInPage(t, sys, me, link, "e2e-referrer", "AAL3_ANY"); code != http.StatusOK || !strings.Contains(page, "Acknowledge as e2e-referrer") || !strings.Contains(page, "Sign out") {
		t.Fatalf("after the referrer's login: HTTP %d\n%s", code, page)
	}
	if code, page = browse(t, me, http.MethodPost, link); code != http.StatusOK || !strings.Contains(page, "Acknowledged") {
		t.Fatalf("the referrer acknowledges: HTTP %d\n%s", code, page)
	}
	for _, secret := range patientData {
		if strings.Contains(page, secret) {
			t.Errorf("the acknowledge page shows patient data %q", secret)
		}
	}
	acked := waitState(t, sys, id, ackv1.State_STATE_ACKNOWLEDGED, 10*time.Second)
	// The sign-ins may outlast step 1's deadline on a loaded machine: what
	// matters is that nobody is told after the acknowledgement (once what
	// the log held before it is done).
	sys.WaitQuiet(t, 30*time.Second)
	toldBefore := len(mailTo(mailsFor(sys, id), registrar))
	if by := acked.GetState().GetAcknowledgedBy(); by.GetPersonId() != "e2e-referrer" || by.GetIdentityProvider() != "oidc" ||
		by.GetIssuer() != sys.IDP.Issuer || by.GetSubject() != "e2e-referrer" || by.GetAcr() != "AAL3_ANY" {
		t.Errorf("acknowledged by %v, want e2e-referrer of %s at AAL3_ANY", by, sys.IDP.Issuer)
	}

	// Signing out ends the session: the page asks to sign in again.
	if code, page = browse(t, me, http.MethodPost, strings.Split(link, "/ack/")[0]+"/auth/logout"); code != http.StatusOK || !strings.Contains(page, "Signed out") {
		t.Fatalf("sign out: HTTP %d\n%s", code, page)
	}
	if _, page = browse(t, me, http.MethodGet, link); strings.Contains(page, "Acknowle"+"dge as") {
		t.Errorf("still signed in after signing out:\n%s", page)
	}

	// Past step 1's deadline nobody else was told.
	waitUntil(due)
	sys.WaitQuiet(t, 30*time.Second)
	if n := len(mailTo(mailsFor(sys, id), registrar)) - toldBefore; n != 0 {
		t.Errorf("registrar emailed %d times after the acknowledgement, want 0", n)
	}
	assertNoPatientData(t, sys)
}

// signInPage acknowledges link as a browser would: the page sends it to the
// provider's login page, where it picks person at assurance level acr; it
// returns where the browser ends (the link's page, or a refusal).
func signInPage(t *testing.T, sys *harness.System, c *http.Client, link, person, acr string) (int, string) {
	t.Helper()
	resp, err := c.Post(link, "application/x-www-form-urlencoded", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	challenge := resp.Request.URL.Query().Get("login_challenge")
	if !strings.HasPrefix(resp.Request.URL.String(), sys.IDP.LoginURL) || challenge == "" {
		t.Fatalf("acknowledging did not reach the provider's login page: ended at %s (HTTP %d)", resp.Request.URL.Redacted(), resp.StatusCode)
	}
	resp, err = c.PostForm(sys.IDP.LoginURL+"/login", url.Values{"login_challenge": {challenge}, "user": {person}, "acr": {acr}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The rate limiter on (one message per person per 3 s, the digest 1 s after
// the first message held back; the other suites run with it off): of three
// URGENT alerts for one referrer in a burst, one is emailed at once and the
// two over the limit are deferred (NotificationDeferred on their timelines)
// and merged into one digest email listing both references, soon, not a
// window later each; none is lost, failed or sent twice.
func TestRateLimiterHoldsABurstBackAndLosesNothing(t *testing.T) {
	const window = 3 * time.Second
	sys := startWith(t, map[string][]string{"notification": {"HERALD_RATE_LIMIT_MAX=1", "HERALD_RATE_LIMIT_WINDOW=" + window.String(),
		"HERALD_RATE_LIMIT_DIGEST_AFTER=1s"}})
	for _, n := range []string{"1", "2", "3"} {
		send(t, sys, oru("MSG-RATE-"+n, "ACC-RATE-"+n, "F", "URGENT"))
	}
	ids := allAlerts(t, sys, 3, 30*time.Second)
	harness.Eventually(t, 60*time.Second, func() bool {
		for _, id := range ids {
			if len(mailTo(mailsFor(sys, id), referrer)) == 0 {
				return false
			}
		}
		return true
	}, func() string { return "the referrer did not get a message (or a digest) for each alert" })
	sys.WaitQuiet(t, 30*time.Second)

	deferred, digested := 0, 0
	for _, id := range ids {
		if n := len(mailTo(mailsFor(sys, id), referrer)); n != 1 {
			t.Errorf("alert %s: %d mails to the referrer name it, want exactly 1", id, n)
		}
		for _, ev := range sys.Events(t, id) {
			if f := ev.GetNotificationFailed(); f != nil {
				t.Errorf("alert %s: a message held by the limiter failed: %v", id, f)
			}
			if ev.GetNotificationDeferred() != nil {
				deferred++
			}
			if d := ev.GetDigestSent(); d != nil {
				digested++
				if d.GetReferences() != 2 {
					t.Errorf("alert %s: in a digest of %d alerts, want 2", id, d.GetReferences())
				}
			}
		}
	}
	if deferred != 2 || digested != 2 {
		t.Errorf("deferred %d and digested %d messages, want 2 and 2 (one at once, two in one digest)", deferred, digested)
	}
	if n := len(mailTo(sys.SMTP.Mails(), referrer)); n != 2 {
		t.Fatalf("mails to the referrer: got %d, want 2 (one message, one digest)", n)
	}
	for _, id := range ids {
		if c := getAlert(t, sys, id).GetState().GetCategory(); c != eventsv1.Category_CATEGORY_URGENT {
			t.Errorf("alert %s is %v, want URGENT (CRITICAL is never held back)", id, c)
		}
	}
}
