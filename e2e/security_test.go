package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/herald-health/herald/e2e/harness"
	"github.com/herald-health/herald/platform/devca"
	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/grpcserver"
	"github.com/herald-health/herald/platform/mtls"
	"github.com/herald-health/herald/platform/redisconn"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/testinfra"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	intakev1 "github.com/herald-health/herald/proto/gen/herald/intake/v1"
)

// outsiders are the clients every listener must refuse: no certificate
// (but the right CA to verify the server), a certificate of another CA,
// and an expired certificate of the system's own CA.
func outsiders(t *testing.T, sys *harness.System) map[string]*mtls.Source {
	t.Helper()
	dir := t.TempDir()
	caFile := filepath.Join(sys.TLS.Dir, devca.CAFileName)
	ca, err := devca.Load(caFile, filepath.Join(sys.TLS.Dir, devca.CAKeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	expired, err := ca.WriteLeaf(dir, devca.Leaf{Name: "expired", NotBefore: now.Add(-2 * time.Hour), NotAfter: now.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	other, err := devca.New("another CA", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	odir := filepath.Join(dir, "other")
	if err := other.WriteCA(odir); err != nil {
		t.Fatal(err)
	}
	foreign, err := other.WriteLeaf(odir, devca.Leaf{Name: "intruder"})
	if err != nil {
		t.Fatal(err)
	}
	foreign.CAFile = caFile // it verifies the server; the server must not verify it
	expired.CAFile = caFile
	out := map[string]*mtls.Source{}
	for name, f := range map[string]mtls.Files{"no certificate": {CAFile: caFile}, "another CA": foreign, "expired": expired} {
		src, err := mtls.Load(f, mtls.Options{})
		if err != nil {
			t.Fatal(err)
		}
		out[name] = src
	}
	return out
}

// Every listener of a running Herald (gRPC of the four services, MLLP,
// FHIR) refuses a client without a certificate, with one from another CA
// or with an expired one, and serves the harness's valid certificate.
func TestSecurityListenersRefuseUnauthenticatedClients(t *testing.T) {
	sys := start(t)
	grpcs := map[string]string{"intake": sys.Addrs.IntakeGRPC, "rules": sys.Addrs.RulesGRPC,
		"acknowledgement": sys.Addrs.AckGRPC, "notification": sys.Addrs.NotificationGRPC}
	check := func(addr string, id *mtls.Source) error {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(mtls.GRPCClientCredentials(id, "")))
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	fhir := func(id *mtls.Source) error {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialTLSContext: id.Dialer(nil, "")}}
		defer c.CloseIdleConnections()
		resp, err := c.Post("https://"+sys.Addrs.FHIR+"/fhir/RZZ/DiagnosticReport", "application/fhir+json", bytes.NewReader([]byte(`{}`)))
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	mllpMsg := "MSH|^~\\&|CRIS|RZZ|HERALD|REGIONNET|20261201120000||ORU^R01^ORU_R01|SEC-1|P|2.4\r"

	// The harness's certificate is served everywhere.
	for name, addr := range grpcs {
		if err := check(addr, sys.TLS.Client); err != nil {
			t.Fatalf("%s gRPC refused a valid certificate: %v", name, err)
		}
	}
	if err := fhir(sys.TLS.Client); err != nil {
		t.Fatalf("FHIR refused a valid certificate: %v", err)
	}
	if _, err := harness.SendMLLPTLS(sys.Addrs.MLLP, mllpMsg, sys.TLS.Client); err != nil {
		t.Fatalf("MLLP refused a valid certificate: %v", err)
	}

	for who, id := range outsiders(t, sys) {
		t.Run(who, func(t *testing.T) {
			for name, addr := range grpcs {
				if err := check(addr, id); err == nil {
					t.Errorf("%s gRPC served a client with %s", name, who)
				}
			}
			if err := fhir(id); err == nil {
				t.Errorf("FHIR served a client with %s", who)
			}
			if ack, err := harness.SendMLLPTLS(sys.Addrs.MLLP, mllpMsg, id); err == nil {
				t.Errorf("MLLP answered a client with %s: %q", who, ack)
			}
		})
	}
	// And plaintext gets nowhere either.
	for name, addr := range grpcs {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err == nil {
			t.Errorf("%s gRPC served a plaintext client", name)
		}
		cancel()
		conn.Close()
	}
	if ack, err := harness.SendMLLP(sys.Addrs.MLLP, mllpMsg); err == nil {
		t.Errorf("MLLP answered a plaintext client: %q", ack)
	}
}

// The secured Redis (deps.sh: TLS, ACL users only) refuses a client
// without the password or with a wrong one.
func TestSecurityRedisRefusesWithoutThePassword(t *testing.T) {
	c := testinfra.RedisTLS(t, testinfra.PrincipalIntake)
	good := redisconn.Config{Addr: c.Addrs[0], Username: c.User, Password: c.Password, TLS: true, TLSCAFile: c.CAFile}
	noPassword, wrong := good, good
	noPassword.Username, noPassword.Password = "", ""
	wrong.Password = "not-" + good.Password
	ping := func(cfg redisconn.Config) error {
		rdb, err := redisconn.NewClient(cfg, func(o *redis.Options) { o.MaxRetries = 0 })
		if err != nil {
			return err
		}
		defer rdb.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return rdb.Ping(ctx).Err()
	}
	for name, cfg := range map[string]redisconn.Config{"no password": noPassword, "wrong password": wrong} {
		if err := ping(cfg); err == nil {
			t.Errorf("Redis answered a client with %s", name)
		}
	}
	if err := ping(good); err != nil {
		t.Fatalf("Redis refused the service's user: %v", err)
	}
}

// Kafka's SASL_SSL listener (deps.sh) refuses a client that does not
// authenticate: it can neither append nor read.
func TestSecurityKafkaRefusesUnauthenticatedClients(t *testing.T) {
	c := testinfra.KafkaSASL(t, testinfra.PrincipalIntake)
	cfg := eventlog.DefaultConfig()
	cfg.Brokers, cfg.TLS, cfg.TLSCAFile = c.Addrs, true, c.CAFile
	cfg.EventsTopic = "herald.alert-events.v1" // the ACLs' topic: the outsider is refused, not merely unlucky
	w := eventlog.NewWriter(cfg, "outsider", telemetry.Nop("e2e"))
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Put(ctx, cfg.EventsTopic, "outsider", []byte("not an event")); err == nil {
		t.Error("an unauthenticated client appended to the events topic")
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	if err := eventlog.ReadTopic(rctx, cfg, cfg.EventsTopic, func(_, _ []byte, _ int, _ int64) error { return nil }); err == nil {
		t.Error("an unauthenticated client read the events topic")
	}
}

// The production profile end to end: every service runs with no
// development setting at all, on Kafka SASL_SSL as its own principal
// (ACLs), the TLS Redis as its own ACL user, mutual TLS on every gRPC hop,
// MLLP and FHIR, and OpenID Connect (the system's provider) for people's
// calls and acknowledge links. A critical
// report sent over MLLP reaches the referrer: nothing in the flow needs a
// plaintext or unauthenticated hop.
func TestSecurityProductionProfileEndToEnd(t *testing.T) {
	b, err := os.ReadFile("testdata/bundle.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sys := harness.StartSystemWith(t, bins, []harness.Bundle{{Tenant: "RZZ", YAML: string(b)}}, harness.Options{
		SecureInfra: true,
		Env:         map[string][]string{"acknowledgement": {"HERALD_DEV_IDENTITY="}},
	})
	for name, p := range sys.Procs {
		for _, kv := range p.Env() {
			if kv == "HERALD_INSECURE=true" || kv == "HERALD_PROFILE=development" {
				t.Fatalf("%s runs with %s", name, kv)
			}
		}
	}
	send(t, sys, oru("MSG-SEC-1", "ACC-SEC-1", "F", "CRITICAL"))
	id := alertIDFromLog(t, sys, 60*time.Second)
	// The harness's certificate is bound to no role in production (the
	// development tools' binding is refused there): the alert API refuses it.
	if _, err := sys.Ack.ListAlerts(context.Background(), &ackv1.ListAlertsRequest{Tenant: "RZZ"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("ListAlerts by an unbound certificate in production: %v, want PermissionDenied", err)
	}
	waitMail(t, sys, id, referrer, 60*time.Second)
	// The send is recorded once the provider took it (after the mail).
	harness.Eventually(t, 60*time.Second, func() bool {
		for _, ev := range sys.Events(t, id) {
			if ev.GetNotificationSent() != nil {
				return true
			}
		}
		return false
	}, func() string { return "no NotificationSent on the log" })
}

// alertIDFromLog waits for the first AlertRaised on the system's event log
// and returns its alert id (for a system whose API the harness may not
// read: the production profile).
func alertIDFromLog(t *testing.T, sys *harness.System, within time.Duration) string {
	t.Helper()
	var id string
	harness.Eventually(t, within, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = eventlog.ReadTopic(ctx, sys.Log, sys.Log.EventsTopic, func(key, value []byte, _ int, _ int64) error {
			var ev eventsv1.Event
			if id == "" && proto.Unmarshal(value, &ev) == nil && ev.GetAlertRaised() != nil {
				id = string(key)
			}
			return nil
		})
		return id != ""
	}, func() string { return "no AlertRaised on the log" })
	return id
}

// A sending system may send only for the trusts it is bound to (intake's
// sender-bindings file): the RIS "north-ris", bound to RZY, presents a
// valid certificate of the system's CA and claims RZZ on every transport.
// MLLP answers AR naming MSH-4, FHIR 403 with an OperationOutcome, gRPC
// PermissionDenied; nothing is recorded and the refusals are logged
// without patient data. The harness's own sender, bound to RZZ, is served.
func TestSecuritySenderClaimingAnotherTrustIsRefused(t *testing.T) {
	b, err := os.ReadFile("testdata/bundle.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bindings := filepath.Join(t.TempDir(), "senders.yaml")
	doc := "senders:\n" +
		"  - {identity: \"" + devca.SPIFFEID(harness.ClientIdentity) + "\", trusts: [RZZ]}\n" +
		"  - {identity: \"" + devca.SPIFFEID("north-ris") + "\", trusts: [RZY]}\n"
	if err := os.WriteFile(bindings, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	sys := harness.StartSystemWith(t, bins, []harness.Bundle{{Tenant: "RZZ", YAML: string(b)}}, harness.Options{
		Env: map[string][]string{"intake": {"HERALD_SENDER_BINDINGS_FILE=" + bindings}},
	})
	caFile := filepath.Join(sys.TLS.Dir, devca.CAFileName)
	ca, err := devca.Load(caFile, filepath.Join(sys.TLS.Dir, devca.CAKeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	f, err := ca.WriteLeaf(t.TempDir(), devca.Leaf{Name: "north-ris"})
	if err != nil {
		t.Fatal(err)
	}
	f.CAFile = caFile
	north, err := mtls.Load(f, mtls.Options{})
	if err != nil {
		t.Fatal(err)
	}

	send(t, sys, oru("MSG-BIND-1", "ACC-BIND-1", "F", "CRITICAL")) // the bound sender: AA

	ack, err := harness.SendMLLPTLS(sys.Addrs.MLLP, oru("MSG-BIND-2", "ACC-BIND-2", "F", "CRITICAL"), north)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ack, "MSA|AR") || !strings.Contains(ack, "MSH-4") || !strings.Contains(ack, "trust RZZ") {
		t.Errorf("MLLP: got %q, want AR with an ERR naming MSH-4 and the trust", ack)
	}

	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialTLSContext: north.Dialer(nil, "")}}
	defer c.CloseIdleConnections()
	resp, err := c.Post("https://"+sys.Addrs.FHIR+"/fhir/RZZ/DiagnosticReport", "application/fhir+json", bytes.NewReader([]byte(`{"resourceType":"DiagnosticReport"}`)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "OperationOutcome") || !strings.Contains(string(body), "forbidden") {
		t.Errorf("FHIR: got %d %s, want 403 with an OperationOutcome", resp.StatusCode, body)
	}

	conn, err := grpcserver.Dial(context.Background(), sys.Addrs.IntakeGRPC, telemetry.Nop("e2e"), grpcserver.ClientTLS(north, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = intakev1.NewIntakeServiceClient(conn).RaiseAlert(context.Background(), &intakev1.RaiseAlertRequest{Report: &intakev1.Report{
		Tenant: "RZZ", SourceSystem: "north-ris", SourceMessageId: "G-BIND-3", Accession: "ACC-BIND-3",
		SourceFlag: &eventsv1.SourceFlag{Category: eventsv1.Category_CATEGORY_CRITICAL},
	}})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("gRPC: got %v, want PermissionDenied", err)
	}

	// The process's output reaches the harness through a pipe: wait for it.
	// MLLP and FHIR are refused by the sender bindings; the gRPC call is
	// refused before them by authorization (north-ris holds no role for
	// RZZ in the role bindings), which logs it too.
	refusals := func() int {
		logs := string(sys.Procs["intake"].Logs())
		return strings.Count(logs, "sender not bound to the trust it claims") + strings.Count(logs, "authorization: call refused")
	}
	harness.Eventually(t, 30*time.Second, func() bool { return refusals() >= 3 },
		func() string {
			return fmt.Sprintf("intake logged %d sender refusals, want 3 (MLLP, FHIR, gRPC)", refusals())
		})
	logs := string(sys.Procs["intake"].Logs())
	if n := refusals(); n != 3 {
		t.Errorf("intake logged %d sender refusals, want 3 (MLLP, FHIR, gRPC)", n)
	}
	if n := strings.Count(logs, "message recorded"); n != 1 {
		t.Errorf("intake recorded %d messages, want 1 (the bound sender's)", n)
	}
	assertNoPatientData(t, sys)
}
