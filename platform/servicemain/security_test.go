package servicemain

import (
	"flag"
	"strings"
	"testing"

	"github.com/herald-health/herald/platform/config"
)

type hop string

func (h hop) Plaintext() string { return string(h) }

func TestSecurityRefusesPlaintextUnlessDevelopmentAsksForIt(t *testing.T) {
	plain := hop("gRPC server on :7002 is plaintext (set grpc-tls-cert)")
	secure := hop("")
	cases := []struct {
		name string
		args []string
		hops []Hop
		want string // "" for no error
	}{
		{"secure hops, default profile", nil, []Hop{secure, secure}, ""},
		{"plaintext hop, default profile", nil, []Hop{secure, plain}, "grpc-tls-cert"},
		{"plaintext hop, development without insecure", []string{"-profile=development"}, []Hop{plain}, "grpc-tls-cert"},
		{"insecure in production", []string{"-insecure"}, []Hop{secure}, "refused in the production profile"},
		{"insecure in explicit production", []string{"-insecure", "-profile=production"}, []Hop{plain}, "refused in the production profile"},
		{"insecure in development", []string{"-insecure", "-profile=development"}, []Hop{plain}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var s Security
			fs := flag.NewFlagSet("probe", flag.ContinueOnError)
			s.RegisterFlags(fs)
			if err := config.ParseEnv(fs, c.args, func(string) (string, bool) { return "", false }); err != nil {
				t.Fatal(err)
			}
			err := s.Check(c.hops...)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("got %v, want no error", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("got %v, want an error mentioning %q", err, c.want)
			}
		})
	}
}

func TestZeroSecurityIsProduction(t *testing.T) {
	if err := (Security{Insecure: true}).Check(); err == nil {
		t.Fatal("a zero profile allowed insecure")
	}
	var p Profile
	if err := p.Set("staging"); err == nil {
		t.Fatal("unknown profile accepted")
	}
}

func TestProfileFromEnvironment(t *testing.T) {
	var s Security
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	s.RegisterFlags(fs)
	env := map[string]string{"HERALD_PROFILE": "development", "HERALD_INSECURE": "true"}
	if err := config.ParseEnv(fs, nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if !s.Development() || !s.Insecure {
		t.Fatalf("got %+v, want development and insecure from the environment", s)
	}
}
