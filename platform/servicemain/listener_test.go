package servicemain

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/devca"
	"github.com/herald-health/herald/platform/mtls"
)

// One Listener binds, checks and loads the TLS of intake's MLLP and FHIR
// listeners and of the console's pages: the settings carry its name, a
// listener that authenticates its clients is refused without their CA
// bundle, and one that does not (browsers) never takes that setting.
func TestListenerSettingsHopsAndTLS(t *testing.T) {
	fhir := Listener{Name: "fhir", What: "FHIR", ClientCA: true}
	pages := Listener{Name: "http", What: "console pages"}

	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	var ff, pf mtls.Files
	fhir.RegisterFlags(fs, &ff)
	pages.RegisterFlags(fs, &pf)
	for _, name := range []string{"fhir-tls-cert", "fhir-tls-key", "fhir-client-ca", "http-tls-cert", "http-tls-key"} {
		if fs.Lookup(name) == nil {
			t.Errorf("setting %s is not bound", name)
		}
	}
	if fs.Lookup("http-client-ca") != nil {
		t.Error("a listener for browsers binds a client CA setting")
	}

	if err := fhir.Validate(mtls.Files{CertFile: "c.pem"}); err == nil || !strings.Contains(err.Error(), "fhir-tls-key") {
		t.Errorf("a certificate without its key: got %v, want an error naming fhir-tls-key", err)
	}
	if err := fhir.Validate(mtls.Files{CAFile: "ca.pem"}); err == nil || !strings.Contains(err.Error(), "fhir-client-ca") {
		t.Errorf("a client CA without a certificate: got %v, want an error naming fhir-client-ca", err)
	}

	for _, c := range []struct {
		l    Listener
		f    mtls.Files
		want string
	}{
		{fhir, mtls.Files{}, "FHIR listener on :8080 is plaintext (set fhir-tls-cert, fhir-tls-key and fhir-client-ca)"},
		{fhir, mtls.Files{CertFile: "c", KeyFile: "k"}, "FHIR listener on :8080 does not authenticate its clients (set fhir-client-ca)"},
		{fhir, mtls.Files{CertFile: "c", KeyFile: "k", CAFile: "ca"}, ""},
		{pages, mtls.Files{}, "console pages listener on :8080 is plaintext (set http-tls-cert and http-tls-key)"},
		{pages, mtls.Files{CertFile: "c", KeyFile: "k"}, ""},
	} {
		if got := c.l.Hop(c.f, ":8080").Plaintext(); got != c.want {
			t.Errorf("%s listener with %+v: got %q, want %q", c.l.Name, c.f, got, c.want)
		}
	}

	if cfg, err := pages.TLS(mtls.Files{}, mtls.Options{}); cfg != nil || err != nil {
		t.Errorf("a plaintext listener loaded TLS: %v %v", cfg, err)
	}
	files, err := devca.WriteDir(t.TempDir(), time.Now(), time.Hour, "intake")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := fhir.TLS(files["intake"], mtls.Options{})
	if err != nil || cfg == nil || cfg.GetCertificate == nil {
		t.Fatalf("got %v %v, want the listener's TLS configuration", cfg, err)
	}
	if _, err := fhir.TLS(mtls.Files{CertFile: "missing.pem", KeyFile: "missing-key.pem"}, mtls.Options{}); err == nil || !strings.Contains(err.Error(), "fhir-tls-*") {
		t.Errorf("missing files: got %v, want an error naming the settings", err)
	}
}
