package servicemain

import (
	"crypto/tls"
	"flag"
	"fmt"

	"github.com/herald-health/herald/platform/mtls"
)

// Listener describes one listener a service serves besides gRPC (intake's
// MLLP and FHIR listeners, the console's pages): the prefix of its TLS
// settings and how messages name it. Its TLS material is an mtls.Files in
// the service's Config, which the Listener's methods bind, check and load,
// the same way for every such listener.
type Listener struct {
	// Name prefixes the settings: <name>-tls-cert, <name>-tls-key and,
	// with ClientCA, <name>-client-ca.
	Name string
	// What names the listener in help and messages ("FHIR").
	What string
	// ClientCA: the listener authenticates its clients by certificate
	// (mutual TLS, with the CA bundle of <name>-client-ca), and a listener
	// without that bundle is a hop Security.Check refuses. Without it
	// clients are not asked for a certificate (a browser's pages).
	ClientCA bool
}

// RegisterFlags binds the listener's TLS settings to f (environment
// fallback HERALD_<FLAG>); the values already in f are the defaults.
func (l Listener) RegisterFlags(fs *flag.FlagSet, f *mtls.Files) {
	fs.StringVar(&f.CertFile, l.Name+"-tls-cert", f.CertFile, "the "+l.What+" listener's TLS certificate chain (PEM); reloaded when the file changes")
	fs.StringVar(&f.KeyFile, l.Name+"-tls-key", f.KeyFile, "key of "+l.Name+"-tls-cert (PEM)")
	if l.ClientCA {
		fs.StringVar(&f.CAFile, l.Name+"-client-ca", f.CAFile, "CA bundle (PEM) of the clients the "+l.What+" listener accepts: each must present a certificate it signed; reloaded when the file changes")
	}
}

// Validate names the setting at fault.
func (l Listener) Validate(f mtls.Files) error {
	if err := f.Validate(l.Name+"-tls-cert", l.Name+"-tls-key"); err != nil {
		return err
	}
	if f.CAFile != "" && f.CertFile == "" {
		return fmt.Errorf("setting %s-client-ca needs %s-tls-cert and %s-tls-key", l.Name, l.Name, l.Name)
	}
	return nil
}

// Hop reports the listener on addr to Security.Check: plaintext, or (with
// ClientCA) not authenticating its clients.
func (l Listener) Hop(f mtls.Files, addr string) Hop {
	return HopFunc(func() string {
		switch {
		case f.CertFile == "" && l.ClientCA:
			return fmt.Sprintf("%s listener on %s is plaintext (set %s-tls-cert, %s-tls-key and %s-client-ca)", l.What, addr, l.Name, l.Name, l.Name)
		case f.CertFile == "":
			return fmt.Sprintf("%s listener on %s is plaintext (set %s-tls-cert and %s-tls-key)", l.What, addr, l.Name, l.Name)
		case l.ClientCA && f.CAFile == "":
			return fmt.Sprintf("%s listener on %s does not authenticate its clients (set %s-client-ca)", l.What, addr, l.Name)
		}
		return ""
	})
}

// TLS loads the listener's TLS material (reloaded when the files change)
// and returns its server configuration: nil when the listener is
// plaintext (no certificate configured).
func (l Listener) TLS(f mtls.Files, opts mtls.Options) (*tls.Config, error) {
	if f.CertFile == "" {
		return nil, nil
	}
	src, err := mtls.Load(f, opts)
	if err != nil {
		return nil, fmt.Errorf("%s TLS (settings %s-tls-*): %w", l.What, l.Name, err)
	}
	return src.ServerConfig(), nil
}
