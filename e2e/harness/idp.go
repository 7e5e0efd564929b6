package harness

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

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
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // retries on a loaded machine
	defer cancel()
	tok, err := i.Provider.Token(ctx, TestClient, TestRedirect, person, acr, audience)
	if err != nil {
		t.Fatalf("sign %s in: %v", person, err)
	}
	return tok.AccessToken
}

// Person is someone who signs in for a suite: their subject at the
// provider, which is also their Herald person id (the herald_person
// claim), and their roles as "TRUST:role" (the herald_roles claim, which
// the development role bindings map to Herald roles).
type Person struct {
	ID    string
	Roles []string
	// ACR is the assurance level they sign in at: AAL3_ANY (the highest,
	// which acknowledging a critical finding needs) when empty.
	ACR string
}

// The e2e trust's people: the recipients of e2e/testdata/bundle.yaml and
// the trust's policy administrators (two: approving needs a second person).
var (
	Referrer        = Person{ID: "e2e-referrer", Roles: []string{"RZZ:clinician"}}
	Registrar       = Person{ID: "e2e-registrar", Roles: []string{"RZZ:clinician"}}
	FailsafeOfficer = Person{ID: "e2e-fso", Roles: []string{"RZZ:failsafe-officer"}}
	PolicyAdmin     = Person{ID: "e2e-policy-admin", Roles: []string{"RZZ:policy-admin"}}
	PolicyAdmin2    = Person{ID: "e2e-policy-admin-2", Roles: []string{"RZZ:policy-admin"}}
)

// AccessToken signs person in at the system's provider as heraldctl login
// and the console do (authorization code + PKCE through the provider's
// login and consent app) and returns their access token for Herald's API:
// what HERALD_CTL_TOKEN takes.
func (s *System) AccessToken(t testing.TB, person Person) string {
	t.Helper()
	s.IDP.Add(person.ID, person.Roles...)
	acr := person.ACR
	if acr == "" {
		acr = "AAL3_ANY"
	}
	return s.IDP.Token(t, person.ID, acr, Audience)
}

// SignIn signs person in (AccessToken) and returns per-RPC credentials
// that call as them: every command a suite makes on an alert or a policy
// goes through one, as the harness's certificate alone may only raise
// alerts and read (docs/authorization.md).
func (s *System) SignIn(t testing.TB, person Person) credentials.PerRPCCredentials {
	t.Helper()
	return authn.Bearer(authn.StaticToken(s.AccessToken(t, person)))
}

// As is SignIn as a call option: sys.Ack.Acknowledge(ctx, req, sys.As(t, harness.Referrer)).
func (s *System) As(t testing.TB, person Person) grpc.CallOption {
	t.Helper()
	return grpc.PerRPCCredentials(s.SignIn(t, person))
}
