package servicemain

import (
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/herald-health/herald/platform/config"
)

// Profile says what a process is: a production service (the default) or a
// development system.
type Profile int

// Profiles. The zero value is unspecified and treated as production.
const (
	ProfileProduction Profile = iota + 1
	ProfileDevelopment
)

// String returns the flag value of p.
func (p Profile) String() string {
	switch p {
	case ProfileDevelopment:
		return "development"
	default:
		return "production"
	}
}

// Set parses a flag value.
func (p *Profile) Set(s string) error {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "production", "prod":
		*p = ProfileProduction
	case "development", "dev":
		*p = ProfileDevelopment
	default:
		return fmt.Errorf("profile %q: want production or development", s)
	}
	return nil
}

// Security is the transport policy of one service: TLS and authentication
// on every hop unless the process is a development system that asked for
// plaintext. Every service registers it once (-profile, -insecure) and
// checks its hops with Check in its Validate.
type Security struct {
	// Profile is production unless set to development.
	Profile Profile
	// Insecure allows plaintext, unauthenticated hops. It is refused in
	// the production profile.
	Insecure bool
}

// RegisterFlags binds -profile and -insecure (HERALD_PROFILE,
// HERALD_INSECURE).
func (s *Security) RegisterFlags(fs *flag.FlagSet) {
	if s.Profile == 0 {
		s.Profile = ProfileProduction
	}
	fs.Var(&s.Profile, "profile", "production or development; development systems alone may use -insecure and development identities")
	fs.BoolVar(&s.Insecure, "insecure", s.Insecure, "development only: allow plaintext, unauthenticated gRPC, Kafka and Redis (refused in the production profile)")
}

// Hop is one connection a service serves or makes (gRPC server or client,
// Kafka, Redis, HTTP) as configured.
type Hop interface {
	// Plaintext says why the hop would not be encrypted and authenticated,
	// naming the settings that would make it so, or returns "".
	Plaintext() string
}

// Development reports whether the process runs in the development profile.
func (s Security) Development() bool { return s.Profile == ProfileDevelopment }

// Check enforces the policy on the service's hops: every hop must be
// encrypted and authenticated, unless Insecure is set, which is refused
// outside the development profile. The error names each plaintext hop
// and the settings that fix it.
func (s Security) Check(hops ...Hop) error {
	if s.Insecure && !s.Development() {
		return fmt.Errorf("setting insecure (%s) is refused in the production profile: give every hop its TLS settings, or set profile=development on a development system", config.EnvName("insecure"))
	}
	if s.Insecure {
		return nil
	}
	if weak := Plaintext(hops...); len(weak) > 0 {
		return errors.New("transport not secured: " + strings.Join(weak, "; ") + " (a development system may set insecure and profile=development instead)")
	}
	return nil
}

// Plaintext lists the hops that are not encrypted and authenticated, for
// the warning a development system logs at start.
func Plaintext(hops ...Hop) []string {
	var weak []string
	for _, h := range hops {
		if h == nil {
			continue
		}
		if why := h.Plaintext(); why != "" {
			weak = append(weak, why)
		}
	}
	return weak
}

// HopFunc adapts a function to Hop: for a listener whose settings are not
// a config type of their own (a service's MLLP or FHIR listener).
type HopFunc func() string

// Plaintext calls f.
func (f HopFunc) Plaintext() string { return f() }

// DevelopmentInsecure is the policy of a development system (and of tests
// that exercise something other than transport security) that runs its
// hops in plaintext on purpose.
func DevelopmentInsecure() Security {
	return Security{Profile: ProfileDevelopment, Insecure: true}
}
