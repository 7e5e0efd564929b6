// Package devidp is a development OpenID provider for the console: a
// mockoidc server whose authorization endpoint signs in, at once and
// without a password, the demo person named by the request's login_hint
// (the sign-in page of a development console lists them). It is for
// `make run` and tests only; production consoles sign in against CIS2 or
// the trust's provider.
package devidp

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"
)

// Person is a demo identity: sub becomes the person id, Roles are
// "role@TRUST".
type Person struct {
	Hint  string
	Sub   string
	Name  string
	Roles []string
}

// ID implements mockoidc.User.
func (p Person) ID() string { return p.Sub }

// Userinfo implements mockoidc.User.
func (p Person) Userinfo([]string) ([]byte, error) {
	return json.Marshal(map[string]string{"sub": p.Sub, "name": p.Name})
}

type claims struct {
	*mockoidc.IDTokenClaims
	Name  string   `json:"name"`
	Roles []string `json:"herald_roles"`
}

// Claims implements mockoidc.User: the ID token carries the name and the
// roles (claim herald_roles, the console's default).
func (p Person) Claims(_ []string, c *mockoidc.IDTokenClaims) (jwt.Claims, error) {
	return &claims{IDTokenClaims: c, Name: p.Name, Roles: p.Roles}, nil
}

// Provider is a started development provider.
type Provider struct {
	*mockoidc.MockOIDC
}

// Start runs the provider on a loopback port; people are looked up by
// login_hint (an unknown or missing hint signs in the first person).
func Start(people []Person) (*Provider, error) {
	m, err := mockoidc.NewServer(nil)
	if err != nil {
		return nil, err
	}
	byHint := map[string]Person{}
	for _, p := range people {
		byHint[p.Hint] = p
	}
	err = m.AddMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/authorize") && len(people) > 0 {
				p, ok := byHint[r.URL.Query().Get("login_hint")]
				if !ok {
					p = people[0]
				}
				m.QueueUser(p)
			}
			next.ServeHTTP(w, r)
		})
	})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	if err := m.Start(ln, nil); err != nil {
		_ = ln.Close()
		return nil, err
	}
	return &Provider{m}, nil
}

// Demo are the demo people of `make run`, one per role, in the demo
// trusts RZZ and RZY (person ids from the demo bundles' directories).
var Demo = []Person{
	{Hint: "clinician", Sub: "rzz-dr-ashworth", Name: "Dr Ada Ashworth", Roles: []string{"clinician@RZZ"}},
	{Hint: "failsafe", Sub: "rzz-fso-patel", Name: "Priya Patel (fail-safe officer)", Roles: []string{"failsafe-officer@RZZ", "clinician@RZZ"}},
	{Hint: "safety", Sub: "rzz-safety-lead-morgan", Name: "Dr Morgan (safety lead)", Roles: []string{"safety-lead@RZZ", "policy-admin@RZZ"}},
	{Hint: "other-trust", Sub: "rzy-dr-khan", Name: "Dr Kamal Khan (trust RZY)", Roles: []string{"clinician@RZY"}},
}
