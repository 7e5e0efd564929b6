package harness

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/herald-health/herald/platform/authn"
	"github.com/herald-health/herald/platform/devidp"
)

// The OAuth clients the harness registers at its identity provider.
const (
	// TestClient is the suites' own (public, PKCE): its redirect is never
	// served, the provider's headless flow stops at it.
	TestClient   = "e2e"
	TestRedirect = "http://127.0.0.1:1/e2e-callback"
	// PageClient is the acknowledge page's (confidential).
	PageClient = "herald-ack-page"
	pageSecret = "e2e-ack-page-client-secret"
	// Audience is Herald's API; OtherAudience another API's (for the
	// wrong-audience refusal).
	Audience      = "herald"
	OtherAudience = "not-herald"
)

// IDP is the system's identity provider: Ory Hydra as a process, with
// the login app of platform/devidp. People are made up as a suite needs
// them (People.Add); anyone else signs in as a clinician of no trust.
type IDP struct {
	*devidp.Provider
	mu     sync.Mutex
	people map[string]devidp.User
}

// StartIDP starts the provider and registers the clients; pageURL is the
// acknowledge page's public URL.
func StartIDP(t testing.TB, pageURL string) *IDP {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute) // the first run builds Hydra
	defer cancel()
	idp := &IDP{people: map[string]devidp.User{}}
	p, err := devidp.Start(ctx, devidp.Options{Users: []devidp.User{{Subject: "e2e-nobody", PersonID: "e2e-nobody"}}, Others: idp.person})
	if err != nil {
		t.Fatalf("start the identity provider: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	idp.Provider = p
	for _, c := range []devidp.Client{
		{ID: TestClient, RedirectURIs: []string{TestRedirect}, Audience: []string{Audience, OtherAudience}},
		{ID: PageClient, Secret: pageSecret, RedirectURIs: []string{strings.TrimRight(pageURL, "/") + "/auth/callback"}, Audience: []string{Audience}},
	} {
		if err := p.RegisterClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	return idp
}

// Add makes person (their subject and Herald id) with roles ("TRUST:role").
func (i *IDP) Add(person string, roles ...string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.people[person] = devidp.User{Subject: person, Name: person, PersonID: person, Roles: roles}
}

func (i *IDP) person(subject string) (devidp.User, bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if u, ok := i.people[subject]; ok {
		return u, true
	}
	return devidp.User{Subject: subject, Name: subject, PersonID: subject}, true
}

// Token signs person in at acr (through the authorization-code + PKCE
// flow) and returns an access token for audience.
func (i *IDP) Token(t testing.TB, person, acr, audience string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tok, err := i.Provider.Token(ctx, TestClient, TestRedirect, person, acr, audience)
	if err != nil {
		t.Fatalf("sign %s in: %v", person, err)
	}
	return tok.AccessToken
}

// As is a call option that calls as person, a clinician of RZZ unless
// roles say otherwise, signed in at the highest assurance level.
func (s *System) As(t testing.TB, person string, roles ...string) grpc.CallOption {
	t.Helper()
	if len(roles) == 0 {
		roles = []string{"RZZ:clinician"}
	}
	s.IDP.Add(person, roles...)
	return grpc.PerRPCCredentials(authn.Bearer(authn.StaticToken(s.IDP.Token(t, person, "AAL3_ANY", Audience))))
}
