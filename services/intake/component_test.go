package intake_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/grpcserver"
	"github.com/herald-health/herald/platform/logging"
	"github.com/herald-health/herald/platform/servicemain"
	"github.com/herald-health/herald/platform/telemetry"
	"github.com/herald-health/herald/platform/testinfra"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	intakev1 "github.com/herald-health/herald/proto/gen/herald/intake/v1"
	"github.com/herald-health/herald/services/intake"
	"github.com/herald-health/herald/services/intake/internal/hl7"
	"github.com/herald-health/herald/services/intake/internal/mllp"
)

// syncBuffer is a log sink shared by the service's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type harness struct {
	cfg   intake.Config
	addrs map[string]string
	logs  *syncBuffer
	spans *tracetest.SpanRecorder
}

// patientData is what must never appear in logs or spans: the synthetic
// patient's NHS number, name, date of birth, address and report text.
var patientData = []string{"9990000018", "TESTPATIENT", "19700101", "1970-01-01", "Synthetic Street", "pneumothorax", "ZZ99 9ZZ", "REFERRER", "RADIOLOGIST"}

func start(t testing.TB, mod func(*intake.Config)) *harness {
	t.Helper()
	return startMetered(t, mod, noop.NewMeterProvider())
}

// startMetered is start with the service's metrics going to mp.
func startMetered(t testing.TB, mod func(*intake.Config), mp metric.MeterProvider) *harness {
	t.Helper()
	return startWith(t, mod, mp, intake.Deps{})
}

// startWith is startMetered with deps (their logger and telemetry are the
// harness's).
func startWith(t testing.TB, mod func(*intake.Config), mp metric.MeterProvider, deps intake.Deps) *harness {
	t.Helper()
	brokers := testinfra.KafkaBrokers(t)
	rdb := testinfra.NewRedis(t)
	cfg := intake.DefaultConfig()
	cfg.Security = servicemain.DevelopmentInsecure()
	cfg.GRPC.Addr = "127.0.0.1:0"
	cfg.MLLPAddr = "127.0.0.1:0"
	cfg.FHIRAddr = "127.0.0.1:0"
	cfg.Log.Brokers = brokers
	cfg.Log.Partitions = 3
	cfg.Log.EventsTopic = testinfra.NewTopic(t, "intake-events", 3)
	cfg.Log.DLQTopic = testinfra.NewTopic(t, "intake-dlq", 3)
	cfg.Log.StateTopic = testinfra.NewTopic(t, "intake-state", 3)
	cfg.Redis.Addr = rdb.Options().Addr
	cfg.Redis.DB = rdb.Options().DB
	cfg.HandleTimeout = 5 * time.Second
	cfg.Tenants = []intake.TenantSettings{
		{ODS: "RZZ", Facilities: []string{"RZZ"}, TriggerPhrases: []string{"CRITICAL ALERT"}},
		{ODS: "RXF", Facilities: []string{"RXFRIS"}},
	}
	if mod != nil {
		mod(&cfg)
	}
	logs := &syncBuffer{}
	rec := tracetest.NewSpanRecorder()
	tel := telemetry.New("herald-intake", sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)), mp)
	ctx, cancel := context.WithCancel(context.Background())
	deps.Logger, deps.Telemetry = logging.New(logs, slog.LevelDebug, "intake"), tel
	svc, err := intake.New(ctx, cfg, deps)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	h := &harness{cfg: cfg, addrs: svc.Addrs(), logs: logs, spans: rec}
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
		// No patient data in logs or span attributes, whatever the test did.
		out := logs.String()
		for _, s := range rec.Ended() {
			for _, a := range s.Attributes() {
				out += string(a.Key) + "=" + a.Value.String() + "\n"
			}
		}
		for _, p := range patientData {
			require.NotContains(t, strings.ToLower(out), strings.ToLower(p), "patient data in logs or spans")
		}
	})
	return h
}

func example(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	require.NoError(t, err)
	return b
}

func (h *harness) dial(t *testing.T) *mllp.Client {
	t.Helper()
	c, err := mllp.Dial(context.Background(), h.addrs["mllp"], nil, 30*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

type ackView struct {
	code, controlID, text string
	errs                  []string
}

func parseAck(t testing.TB, b []byte) ackView {
	t.Helper()
	m, err := hl7.Parse(b)
	require.NoError(t, err, "ACK parses: %q", b)
	msa, ok := m.Segment("MSA")
	require.True(t, ok)
	v := ackView{code: msa.Field(1), controlID: msa.Field(2), text: msa.Field(3)}
	for _, e := range m.All("ERR") {
		v.errs = append(v.errs, e.Get(2, 1, 1, 1)+"-"+e.Get(2, 1, 3, 1)+" "+e.Field(4)+": "+e.Field(8))
	}
	return v
}

func send(t *testing.T, c *mllp.Client, msg []byte) ackView {
	t.Helper()
	ack, err := c.Send(msg)
	require.NoError(t, err)
	return parseAck(t, ack)
}

// events reads every event on the harness's topic.
func (h *harness) events(t testing.TB) []*eventsv1.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*eventsv1.Event
	err := eventlog.ReadTopic(ctx, h.cfg.Log, h.cfg.Log.EventsTopic, func(_, value []byte, _ int, _ int64) error {
		e := &eventsv1.Event{}
		if err := proto.Unmarshal(value, e); err != nil {
			return err
		}
		out = append(out, e)
		return nil
	})
	require.NoError(t, err)
	return out
}

// variant rewrites the example: a new control id, and optional replacements.
func variant(t testing.TB, controlID string, repl ...string) []byte {
	s := strings.Replace(string(example(t, "oru_r01_critical_pneumothorax.hl7")), "MSG20261129000123", controlID, 1)
	for i := 0; i+1 < len(repl); i += 2 {
		require.Contains(t, s, repl[i])
		s = strings.Replace(s, repl[i], repl[i+1], 1)
	}
	return []byte(s)
}

func TestHL7ExampleIsRecordedOnceAndResendIsDuplicate(t *testing.T) {
	h := start(t, nil)
	c := h.dial(t)
	msg := example(t, "oru_r01_critical_pneumothorax.hl7")

	// Given the reference message, when it is sent, then AA echoes MSH-10.
	a := send(t, c, msg)
	require.Equal(t, "AA", a.code, a.text)
	require.Equal(t, "MSG20261129000123", a.controlID)
	wantAlert := eventlog.ID("RZZ", "ACC20261129001", "report")
	require.Contains(t, a.text, wantAlert)

	// The event is durable by the time the ACK arrives.
	evs := h.events(t)
	require.Len(t, evs, 1)
	ev := evs[0]
	require.Equal(t, wantAlert, ev.AlertId)
	require.Equal(t, "RZZ", ev.Tenant)
	raised := ev.GetAlertRaised()
	require.NotNil(t, raised, "got %s", eventlog.TypeOf(ev))
	require.Equal(t, msg, raised.Details.RawPayload)
	require.Equal(t, eventsv1.Category_CATEGORY_CRITICAL, raised.Details.SourceFlag.Category)
	require.Equal(t, "9990000018", raised.Details.Patient.NhsNumber)

	// When the interface engine resends it, then it is acknowledged with the
	// original outcome and nothing more is appended.
	again := send(t, c, msg)
	require.Equal(t, "AA", again.code)
	require.Contains(t, again.text, "duplicate")
	require.Contains(t, again.text, wantAlert)
	require.Len(t, h.events(t), 1)

	// The message's span is the root of the alert's trace, with only the
	// allowed attributes.
	var found bool
	for _, s := range h.spans.Ended() {
		if s.Name() != "intake.receive hl7" {
			continue
		}
		found = true
		require.False(t, s.Parent().IsValid(), "the intake span is a root")
		for _, a := range s.Attributes() {
			require.Contains(t, []string{"herald.alert_id", "herald.tenant", "herald.source_category", "herald.outcome"}, string(a.Key))
		}
	}
	require.True(t, found, "a span per received message")

	// The record's headers carry the trace context of that span.
	var root sdktrace.ReadOnlySpan
	for _, s := range h.spans.Ended() {
		if s.Name() == "intake.receive hl7" {
			root = s
			break
		}
	}
	partition := (&kafka.Hash{}).Balance(kafka.Message{Key: []byte(wantAlert)}, 0, 1, 2)
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: h.cfg.Log.Brokers, Topic: h.cfg.Log.EventsTopic, Partition: partition})
	defer r.Close()
	rctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rec, err := r.ReadMessage(rctx)
	require.NoError(t, err)
	var traceparent string
	for _, hd := range rec.Headers {
		if hd.Key == "traceparent" {
			traceparent = string(hd.Value)
		}
	}
	require.Contains(t, traceparent, root.SpanContext().TraceID().String())
}

func TestHL7AmendAndCancelTheSameAlert(t *testing.T) {
	h := start(t, nil)
	c := h.dial(t)
	require.Equal(t, "AA", send(t, c, variant(t, "M-RAISE")).code)
	require.Equal(t, "AA", send(t, c, variant(t, "M-AMEND", "||RAD|F|", "||RAD|C|")).code)
	require.Equal(t, "AA", send(t, c, variant(t, "M-CANCEL", "||RAD|F|", "||RAD|X|")).code)

	evs := h.events(t)
	require.Len(t, evs, 3)
	var types []string
	for _, e := range evs {
		types = append(types, eventlog.TypeOf(e))
		require.Equal(t, evs[0].AlertId, e.AlertId, "one alert")
	}
	require.ElementsMatch(t, []string{"AlertRaised", "AlertAmended", "AlertCancelled"}, types)
}

func TestHL7ProblemsAreAnsweredWithTheReason(t *testing.T) {
	h := start(t, func(c *intake.Config) { c.MaxMessageBytes = 4096 })
	c := h.dial(t)
	tests := []struct {
		name     string
		give     []byte
		wantCode string
		wantErr  string
	}{
		{name: "not HL7", give: []byte("hello"), wantCode: "AE", wantErr: "MSH-"},
		{name: "not ORU^R01", give: variant(t, "M-ADT", "ORU^R01^ORU_R01", "ADT^A01"), wantCode: "AE", wantErr: "MSH-9"},
		{name: "unknown facility", give: variant(t, "M-FAC", "|CRIS|RZZ|", "|CRIS|NOWHERE|"), wantCode: "AE", wantErr: "MSH-4"},
		{name: "no control id", give: variant(t, ""), wantCode: "AE", wantErr: "MSH-10"},
		{name: "oversize", give: variant(t, "M-BIG", "NTE|1|L|", "NTE|1|L|"+strings.Repeat("x", 5000)), wantCode: "AE", wantErr: "exceeds 4096 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := send(t, c, tt.give)
			require.Equal(t, tt.wantCode, a.code, a.text)
			require.NotEmpty(t, a.errs)
			require.Contains(t, strings.Join(a.errs, "\n")+a.text, tt.wantErr)
		})
	}
	// The connection survived every problem and nothing was appended.
	require.Empty(t, h.events(t))
}

func TestHL7IncompleteFlaggedReportIsQuarantinedNotRejected(t *testing.T) {
	h := start(t, nil)
	c := h.dial(t)
	a := send(t, c, variant(t, "M-BADNHS", "9990000018^^^NHS^NH", "9990000019^^^NHS^NH"))
	require.Equal(t, "AA", a.code, a.text)
	require.Contains(t, a.text, "quarantined")
	require.Contains(t, strings.Join(a.errs, "\n"), "PID-3 W: NHS number fails the modulus 11 check")

	evs := h.events(t)
	require.Len(t, evs, 1)
	q := evs[0].GetAlertQuarantined()
	require.NotNil(t, q)
	require.Equal(t, "PID-3", q.Problems[0].Field)
}

func TestHL7NoAAWhileKafkaIsDownAndResendAcceptedOnce(t *testing.T) {
	h := start(t, func(c *intake.Config) { c.HandleTimeout = 3 * time.Second })
	client := &kafka.Client{Addr: kafka.TCP(h.cfg.Log.Brokers...), Timeout: 10 * time.Second, Transport: &kafka.Transport{}}
	ctx := context.Background()
	topic := h.cfg.Log.EventsTopic

	// Given the event log is unavailable (the topic is gone),
	_, err := client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	require.NoError(t, err)
	// Deletion completes after the request returns: until the broker's
	// metadata no longer lists the topic, a produce can still land in it
	// (and be answered AA, correctly: it was durable then).
	require.Eventually(t, func() bool {
		md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		if err != nil || len(md.Topics) != 1 {
			return false
		}
		return errors.Is(md.Topics[0].Error, kafka.UnknownTopicOrPartition)
	}, 30*time.Second, 100*time.Millisecond, "the deleted topic is still in the broker's metadata")
	c := h.dial(t)
	msg := variant(t, "M-OUTAGE")
	// when a message arrives, then it is not acknowledged AA.
	a := send(t, c, msg)
	require.Equal(t, "AR", a.code, a.text)

	// Given the log is back,
	require.Eventually(t, func() bool {
		resp, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 3, ReplicationFactor: 1}}})
		return err == nil && (resp.Errors[topic] == nil)
	}, 30*time.Second, 500*time.Millisecond)
	// when the sender resends, then it is accepted,
	require.Eventually(t, func() bool { return send(t, c, msg).code == "AA" }, 60*time.Second, time.Second)
	// and a further resend is a duplicate,
	dup := send(t, c, msg)
	require.Equal(t, "AA", dup.code)
	require.Contains(t, dup.text, "duplicate")
	// and the log holds the alert exactly once.
	require.Len(t, h.events(t), 1)
}

func TestMLLPSplitFramesManyConnectionsAndIdleTimeout(t *testing.T) {
	h := start(t, func(c *intake.Config) { c.MLLPIdleTimeout = time.Second })

	// A frame split across many writes, and two frames in one write.
	conn, err := net.Dial("tcp", h.addrs["mllp"])
	require.NoError(t, err)
	defer conn.Close()
	frame := func(b []byte) []byte { return append(append([]byte{0x0b}, b...), 0x1c, 0x0d) }
	one := frame(variant(t, "M-SPLIT", "ACC20261129001", "ACC-SPLIT"))
	for i := 0; i < len(one); i += 100 {
		_, err := conn.Write(one[i:min(i+100, len(one))])
		require.NoError(t, err)
		time.Sleep(5 * time.Millisecond)
	}
	r := mllp.NewReader(conn, 1<<20)
	ack, err := r.ReadFrame()
	require.NoError(t, err)
	require.Equal(t, "AA", parseAck(t, ack).code)
	two := append(frame(variant(t, "M-TWO-1", "ACC20261129001", "ACC-T1")), frame(variant(t, "M-TWO-2", "ACC20261129001", "ACC-T2"))...)
	_, err = conn.Write(two)
	require.NoError(t, err)
	for _, want := range []string{"M-TWO-1", "M-TWO-2"} {
		ack, err := r.ReadFrame()
		require.NoError(t, err)
		a := parseAck(t, ack)
		require.Equal(t, "AA", a.code)
		require.Equal(t, want, a.controlID)
	}

	// Many concurrent connections.
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 20; i++ {
		wg.Go(func() {
			c, err := mllp.Dial(context.Background(), h.addrs["mllp"], nil, 30*time.Second)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for j := 0; j < 3; j++ {
				id := fmt.Sprintf("M-C%d-%d", i, j)
				ack, err := c.Send(variant(t, id, "ACC20261129001", "ACC-"+id))
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Contains(ack, []byte("MSA|AA|"+id)) {
					errs <- fmt.Errorf("connection %d message %d: %q", i, j, ack)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Len(t, h.events(t), 3+60)

	// An idle (or half-open) connection is closed by the server.
	idle, err := net.Dial("tcp", h.addrs["mllp"])
	require.NoError(t, err)
	defer idle.Close()
	_ = idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = idle.Read(make([]byte, 1))
	require.Error(t, err)
	var ne net.Error
	require.False(t, errorsAs(err, &ne) && ne.Timeout(), "the server closed the idle connection before the client gave up")
}

func errorsAs(err error, target *net.Error) bool {
	ne, ok := err.(net.Error)
	if ok {
		*target = ne
	}
	return ok
}

func TestPythonHL7MLLPSendGetsAA(t *testing.T) {
	h := start(t, nil)
	_, port, err := net.SplitHostPort(h.addrs["mllp"])
	require.NoError(t, err)
	// python3-hl7's mllp_send: a real client nobody here wrote.
	out, err := exec.Command("mllp_send", "--port", port, "--file", "testdata/oru_r01_critical_pneumothorax.mllp", "127.0.0.1").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "MSA|AA|MSG20261129000123")
	require.Len(t, h.events(t), 1)
}

func TestFHIR(t *testing.T) {
	h := start(t, nil)
	base := "http://" + h.addrs["fhir"] + "/fhir/RZZ"
	post := func(url string, body []byte) (*http.Response, map[string]any) {
		resp, err := http.Post(url, "application/fhir+json", bytes.NewReader(body))
		require.NoError(t, err)
		defer resp.Body.Close()
		var oo map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&oo))
		require.Equal(t, "OperationOutcome", oo["resourceType"])
		return resp, oo
	}
	diag := func(oo map[string]any) string {
		b, _ := json.Marshal(oo["issue"])
		return string(b)
	}

	// Happy path: a DiagnosticReport is 201 with the alert reference.
	dr := example(t, "diagnosticreport_critical.json")
	resp, oo := post(base+"/DiagnosticReport", dr)
	require.Equal(t, http.StatusCreated, resp.StatusCode, diag(oo))
	alert := eventlog.ID("RZZ", "ACC20261129001", "report")
	require.Equal(t, "/alerts/"+alert, resp.Header.Get("Location"))
	// The lone DiagnosticReport names no referrer: quarantined, not refused.
	require.Equal(t, "quarantined", resp.Header.Get("X-Herald-Outcome"))

	// A resend is 200 with the same alert.
	resp, _ = post(base+"/DiagnosticReport", dr)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "/alerts/"+alert, resp.Header.Get("Location"))

	// A transaction Bundle with the referrer is raised; the same finding
	// through HL7 would be the same alert.
	bundle := fmt.Sprintf(`{"resourceType":"Bundle","type":"transaction","identifier":{"system":"urn:test","value":"B1"},"entry":[
	 {"fullUrl":"urn:uuid:p1","resource":{"resourceType":"Patient","id":"p1","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9990000018"}]}},
	 {"resource":{"resourceType":"ServiceRequest","status":"active","intent":"order","subject":{"reference":"urn:uuid:p1"},"requester":{"identifier":{"system":"https://fhir.hl7.org.uk/Id/gmc-number","value":"C1234567"}}}},
	 {"resource":{"resourceType":"Observation","status":"final","code":{"text":"impression"},"interpretation":[{"coding":[{"code":"AA"}]}]}},
	 {"resource":%s}]}`, string(example(t, "diagnosticreport_critical.json")))
	bundle = strings.Replace(bundle, `"reference": "Patient/pt-synthetic-1"`, `"reference": "urn:uuid:p1"`, 1)
	resp, oo = post(base, []byte(bundle))
	require.Equal(t, http.StatusCreated, resp.StatusCode, diag(oo))
	require.Equal(t, "raised", resp.Header.Get("X-Herald-Outcome"))

	// Errors are OperationOutcomes with 4xx naming the element.
	tests := []struct {
		name, url, body string
		wantStatus      int
		wantText        string
	}{
		{name: "unknown element", url: base + "/DiagnosticReport", body: `{"resourceType":"DiagnosticReport","status":"final","code":{},"colour":"red"}`, wantStatus: 400, wantText: "colour"},
		{name: "wrong resource", url: base, body: `{"resourceType":"Patient"}`, wantStatus: 422, wantText: "resourceType"},
		{name: "unknown tenant", url: "http://" + h.addrs["fhir"] + "/fhir/RAA/DiagnosticReport", body: string(dr), wantStatus: 404, wantText: "tenant"},
		{name: "not JSON", url: base, body: "MSH|", wantStatus: 400, wantText: "JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, oo := post(tt.url, []byte(tt.body))
			require.Equal(t, tt.wantStatus, resp.StatusCode)
			require.Contains(t, diag(oo), tt.wantText)
		})
	}
	require.Len(t, h.events(t), 2)
}

func TestGRPC(t *testing.T) {
	h := start(t, nil)
	conn, err := grpcserver.Dial(context.Background(), h.addrs["grpc"], telemetry.Nop("test"))
	require.NoError(t, err)
	defer conn.Close()
	c := intakev1.NewIntakeServiceClient(conn)
	ctx := context.Background()
	report := func() *intakev1.Report {
		return &intakev1.Report{
			Tenant: "RZZ", SourceSystem: "ris", SourceMessageId: "G1", Accession: "ACC-G1",
			Patient:    &eventsv1.Patient{NhsNumber: "999 000 0018"},
			Referrer:   &eventsv1.Clinician{Id: "C1234567"},
			SourceFlag: &eventsv1.SourceFlag{Category: eventsv1.Category_CATEGORY_URGENT},
		}
	}
	resp, err := c.RaiseAlert(ctx, &intakev1.RaiseAlertRequest{Report: report()})
	require.NoError(t, err)
	require.Equal(t, eventlog.ID("RZZ", "ACC-G1", "report"), resp.AlertId)
	require.False(t, resp.Duplicate)
	require.False(t, resp.Quarantined)

	resp2, err := c.RaiseAlert(ctx, &intakev1.RaiseAlertRequest{Report: report()})
	require.NoError(t, err)
	require.True(t, resp2.Duplicate)
	require.Equal(t, resp.AlertId, resp2.AlertId)

	bad := report()
	bad.SourceMessageId = "G2"
	bad.Patient.NhsNumber = "1234567890"
	q, err := c.RaiseAlert(ctx, &intakev1.RaiseAlertRequest{Report: bad})
	require.NoError(t, err)
	require.True(t, q.Quarantined)
	require.Equal(t, "report.patient.nhs_number", q.Problems[0].Field)

	am := report()
	am.SourceMessageId = "G3"
	a, err := c.AmendAlert(ctx, &intakev1.AmendAlertRequest{Report: am, Reason: "typo"})
	require.NoError(t, err)
	require.Equal(t, resp.AlertId, a.AlertId)
	cn, err := c.CancelAlert(ctx, &intakev1.CancelAlertRequest{Tenant: "RZZ", SourceSystem: "ris", SourceMessageId: "G4", Accession: "ACC-G1", Reason: "wrong patient"})
	require.NoError(t, err)
	require.Equal(t, resp.AlertId, cn.AlertId)

	// InvalidArgument names the fields.
	invalid := report()
	invalid.Tenant = "nope"
	invalid.SourceMessageId = ""
	_, err = c.RaiseAlert(ctx, &intakev1.RaiseAlertRequest{Report: invalid})
	st := status.Convert(err)
	require.Equal(t, codes.InvalidArgument, st.Code(), st.Message())
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.FieldViolations {
				fields = append(fields, v.Field)
			}
		}
	}
	require.ElementsMatch(t, []string{"report.tenant", "report.source_message_id"}, fields)

	unflagged := report()
	unflagged.SourceMessageId = "G5"
	unflagged.SourceFlag = nil
	_, err = c.RaiseAlert(ctx, &intakev1.RaiseAlertRequest{Report: unflagged})
	require.Equal(t, codes.InvalidArgument, status.Code(err))

	evs := h.events(t)
	var types []string
	for _, e := range evs {
		types = append(types, eventlog.TypeOf(e))
	}
	require.ElementsMatch(t, []string{"AlertRaised", "AlertQuarantined", "AlertAmended", "AlertCancelled"}, types)
}

func TestReplicasShareTheOutcomeRecordAndRedisLossIsHarmless(t *testing.T) {
	// Given two replicas on the same topic and Redis database,
	a := start(t, nil)
	b := start(t, func(c *intake.Config) {
		c.Log = a.cfg.Log
		c.Redis = a.cfg.Redis
	})
	msg := variant(t, "M-REPLICA")
	// when a message accepted by one is resent to the other,
	require.Equal(t, "AA", send(t, a.dial(t), msg).code)
	dup := send(t, b.dial(t), msg)
	// then the other answers with the original outcome and appends nothing.
	require.Equal(t, "AA", dup.code)
	require.Contains(t, dup.text, "duplicate")
	require.Len(t, a.events(t), 1)

	// Given Redis lost its data, when the message is resent, then it is
	// appended again with the same event id, which consumers skip.
	rdb := redis.NewClient(&redis.Options{Addr: a.cfg.Redis.Addr, DB: a.cfg.Redis.DB})
	defer rdb.Close()
	require.NoError(t, rdb.FlushDB(context.Background()).Err())
	again := send(t, b.dial(t), msg)
	require.Equal(t, "AA", again.code)
	require.NotContains(t, again.text, "duplicate")
	evs := a.events(t)
	require.Len(t, evs, 2)
	require.Equal(t, evs[0].EventId, evs[1].EventId)
}

func TestRedisDownStillAcceptsAndResendIsHarmless(t *testing.T) {
	// Given Redis cannot be reached (it is only a cache),
	h := start(t, func(c *intake.Config) { c.Redis.Addr = testinfra.FreePort(t) })
	c := h.dial(t)
	msg := variant(t, "M-NOREDIS")
	// when a message and its resend arrive, then both are accepted,
	require.Equal(t, "AA", send(t, c, msg).code)
	again := send(t, c, msg)
	require.Equal(t, "AA", again.code)
	// and the resend, not recognised, is appended with the same event id.
	evs := h.events(t)
	require.Len(t, evs, 2)
	require.Equal(t, evs[0].EventId, evs[1].EventId)
	require.Contains(t, h.logs.String(), "outcome store unavailable")
}

func TestShutdownAnswersTheMessageInFlight(t *testing.T) {
	brokers := testinfra.KafkaBrokers(t)
	rdb := testinfra.NewRedis(t)
	cfg := intake.DefaultConfig()
	cfg.Security = servicemain.DevelopmentInsecure()
	cfg.Tenants = []intake.TenantSettings{{ODS: "RZZ", Facilities: []string{"RZZ"}, TriggerPhrases: []string{"CRITICAL ALERT"}}}
	cfg.GRPC.Addr, cfg.MLLPAddr, cfg.FHIRAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Log.Brokers = brokers
	cfg.Log.Partitions = 1
	cfg.Log.EventsTopic = testinfra.NewTopic(t, "intake-events", 1)
	cfg.Log.DLQTopic = testinfra.NewTopic(t, "intake-dlq", 1)
	cfg.Log.StateTopic = testinfra.NewTopic(t, "intake-state", 1)
	cfg.Redis.Addr, cfg.Redis.DB = rdb.Options().Addr, rdb.Options().DB
	cfg.HandleTimeout = 3 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := intake.New(ctx, cfg, intake.Deps{})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()

	// Given a message whose append is slow (its topic is gone, so the
	// writer retries),
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: &kafka.Transport{}}
	_, err = client.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{cfg.Log.EventsTopic}})
	require.NoError(t, err)
	c, err := mllp.Dial(context.Background(), svc.Addrs()["mllp"], nil, 30*time.Second)
	require.NoError(t, err)
	defer c.Close()
	acks := make(chan []byte, 1)
	go func() {
		ack, err := c.Send(variant(t, "M-SHUTDOWN"))
		if err != nil {
			ack = []byte(err.Error())
		}
		acks <- ack
	}()
	time.Sleep(300 * time.Millisecond)
	// when the service is stopped mid-message,
	select {
	case ack := <-acks:
		t.Fatalf("answered before the stop; the test needs a slower append: %q", ack)
	default:
	}
	cancel()
	// then the sender still gets its answer (not AA: nothing was recorded),
	ack := <-acks
	require.Equal(t, "AR", parseAck(t, ack).code)
	// and the service stops.
	require.NoError(t, <-done)
}
