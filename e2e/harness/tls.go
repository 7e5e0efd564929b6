package harness

import (
	"testing"
	"time"

	"github.com/herald-health/herald/platform/devca"
	"github.com/herald-health/herald/platform/mtls"
)

// ClientIdentity is the certificate the harness (and heraldctl run by the
// suites) presents to the services.
const ClientIdentity = "e2e"

// TLS is a system's throwaway development CA and the identities it issued:
// one per service and the harness's own. The suites run every gRPC hop,
// MLLP and FHIR over mutual TLS with it, so that the path they test is the
// path production runs. (Kafka and Redis stay on the test infrastructure's
// plaintext listeners, hence the development profile with -insecure; the
// security suite covers their secured listeners.)
type TLS struct {
	Dir string
	IDs map[string]mtls.Files
	// Client is the harness's identity (ClientIdentity).
	Client *mtls.Source
}

// NewTLS makes a CA in a temporary folder and issues a certificate to
// each service and to the harness.
func NewTLS(t testing.TB) *TLS {
	t.Helper()
	dir := t.TempDir()
	ids, err := devca.WriteDir(dir, time.Now(), 24*time.Hour, append(append([]string{}, Services...), ClientIdentity)...)
	if err != nil {
		t.Fatal(err)
	}
	client, err := mtls.Load(ids[ClientIdentity], mtls.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &TLS{Dir: dir, IDs: ids, Client: client}
}

// ServiceEnv returns the settings that make service name serve (and call)
// with its certificate: gRPC for every service, MLLP and FHIR for intake,
// in the development profile with -insecure for the plaintext test Kafka
// and Redis.
func (x *TLS) ServiceEnv(name string) []string {
	return append([]string{"HERALD_PROFILE=development", "HERALD_INSECURE=true"}, x.ProductionEnv(name)...)
}

// ProductionEnv is ServiceEnv without the development settings: the
// services' default profile, production, in which the caller must give
// the secured Kafka and Redis settings too, or the service refuses to
// start.
func (x *TLS) ProductionEnv(name string) []string {
	f := x.IDs[name]
	env := []string{
		"HERALD_GRPC_TLS_CERT=" + f.CertFile, "HERALD_GRPC_TLS_KEY=" + f.KeyFile, "HERALD_GRPC_CLIENT_CA=" + f.CAFile,
	}
	if name == "intake" {
		env = append(env,
			"HERALD_MLLP_TLS_CERT="+f.CertFile, "HERALD_MLLP_TLS_KEY="+f.KeyFile, "HERALD_MLLP_CLIENT_CA="+f.CAFile,
			"HERALD_FHIR_TLS_CERT="+f.CertFile, "HERALD_FHIR_TLS_KEY="+f.KeyFile, "HERALD_FHIR_CLIENT_CA="+f.CAFile)
	}
	return env
}

// CtlEnv returns the environment that makes heraldctl present the
// harness's certificate.
func (x *TLS) CtlEnv() []string {
	f := x.IDs[ClientIdentity]
	return []string{"HERALD_CTL_TLS_CERT=" + f.CertFile, "HERALD_CTL_TLS_KEY=" + f.KeyFile, "HERALD_CTL_TLS_CA=" + f.CAFile}
}
