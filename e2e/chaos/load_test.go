//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"hash/fnv"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herald-health/herald/e2e/harness"
	"github.com/herald-health/herald/platform/authn"
	"github.com/herald-health/herald/platform/grpcserver"
	"github.com/herald-health/herald/platform/telemetry"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
)

// oru is a critical ORU^R01 (the e2e suite's reference message) with its
// own message id and accession. All patient data is synthetic.
func oru(msgID, accession string) string {
	now := time.Now().UTC().Format("20060102150405")
	return strings.Join([]string{
		"MSH|^~\\&|CRIS|RZZ|CRITALERT|REGIONNET|" + now + "||ORU^R01^ORU_R01|" + msgID + "|P|2.4|||AL|NE|GBR|UNICODE UTF-8",
		"PID|1||9990000018^^^NHS^NH~RZZ1234567^^^RZZ^MR||TESTPATIENT^ALEX^^^MX||19700101|U|||1 Synthetic Street^^Testtown^^ZZ99 9ZZ^GBR",
		"PV1|1|E|ED^MAJ^07^RZZ01|||||C1234567^REFERRER^SAM^^^DR||EM",
		"ORC|RE|ORD778899^ICE|" + accession + "^CRIS||CM||||20261129143400|||C1234567^REFERRER^SAM^^^DR",
		"OBR|1|ORD778899^ICE|" + accession + "^CRIS|XCHES^XR Chest^NICIP~399208008^Plain chest X-ray^SCT|||20261129141000||||||SOB, pleuritic chest pain, ?PE|||C1234567^REFERRER^SAM^^^DR|01234 567890|||||" + now + "||RAD|F||^^^^^S|||||R9876543&RADIOLOGIST&JO&&&DR",
		"OBX|1|TX|RPT^Report text^L|1|FINDINGS: Large right pneumothorax with complete collapse of the right lung.||||||F",
		"OBX|2|CE|ALERTCAT^Radiology alert category^L|1|CRITICAL^Alert^L|||AA|||F",
	}, "\r")
}

// loadStats is what the generator did.
type loadStats struct {
	mu       sync.Mutex
	sent     int
	accepted map[string]time.Time // message id -> when intake answered AA
	refused  map[string]string    // message id -> last answer or error, never AA
	retries  atomic.Int64
}

// drive sends rate alerts/s over MLLP (through the intake balancer) for
// dur, each retried until intake answers AA (a replica killed mid-send
// answers nothing; the resend is deduplicated), for up to a minute.
func drive(ctx context.Context, s *system, runID string, rate float64, dur time.Duration) *loadStats {
	st := &loadStats{accepted: map[string]time.Time{}, refused: map[string]string{}}
	every := time.Duration(float64(time.Second) / rate)
	tick := time.NewTicker(every)
	defer tick.Stop()
	end := time.Now().Add(dur)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 128)
	for n := 0; time.Now().Before(end) && ctx.Err() == nil; n++ {
		<-tick.C
		msgID := fmt.Sprintf("C%s%06d", runID, n)
		st.mu.Lock()
		st.sent++
		st.mu.Unlock()
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			msg := oru(msgID, "A"+msgID[1:])
			last := ""
			deadline := time.Now().Add(time.Minute)
			for attempt := 0; time.Now().Before(deadline) && ctx.Err() == nil; attempt++ {
				if attempt > 0 {
					st.retries.Add(1)
					time.Sleep(500 * time.Millisecond)
				}
				ack, err := harness.SendMLLPTLS(s.mllp.addr, msg, s.tls.Client)
				if err == nil && strings.Contains(ack, "MSA|AA") {
					st.mu.Lock()
					st.accepted[msgID] = time.Now()
					st.mu.Unlock()
					return
				}
				last = fmt.Sprint(err)
				if err == nil {
					last = ack
				}
			}
			st.mu.Lock()
			st.refused[msgID] = last
			st.mu.Unlock()
		})
	}
	wg.Wait()
	return st
}

// ackPlan is what the suite does with an alert, drawn from its reference
// and the run's seed: half are left to climb to the fail-safe queue, a
// quarter acknowledged through the mail's link, a quarter through gRPC, at
// a step and a delay after that step's mail of their own.
type ackPlan struct {
	method string // "", "link" or "grpc"
	step   int
	delay  time.Duration
}

func planFor(seed uint64, ref string) ackPlan {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%s", seed, ref)
	x := h.Sum64()
	p := ackPlan{step: int(x>>8) % 3, delay: time.Duration((x>>16)%2500) * time.Millisecond}
	switch x % 4 {
	case 0:
		p.method = "link"
	case 1:
		p.method = "grpc"
	}
	return p
}

// ackStats is what the acknowledger did.
type ackStats struct {
	mu        sync.Mutex
	planned   map[string]ackPlan // by reference
	done      map[string]time.Time
	failed    map[string]string
	durations []time.Duration // of the successful call
}

// acknowledger watches the sinks and acknowledges alerts by their plans
// until ctx ends.
func acknowledge(ctx context.Context, t testing.TB, s *system, o *observer, seed uint64) *ackStats {
	t.Helper()
	st := &ackStats{planned: map[string]ackPlan{}, done: map[string]time.Time{}, failed: map[string]string{}}
	conn, err := grpcserver.Dial(ctx, s.ackGRPC.addr, telemetry.Nop("chaos"), grpcserver.ClientTLS(s.tls.Client, ""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := ackv1.NewAcknowledgementServiceClient(conn)
	actors := []string{"chaos-referrer", "chaos-registrar", "chaos-fso"}
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	wg.Go(func() {
		next := 0
		for ctx.Err() == nil {
			var msgs []message
			msgs, next = s.box.since(next)
			for _, m := range msgs {
				if m.ref == "" || m.slot.step() < 0 || m.slot == slotWard {
					continue
				}
				p := planFor(seed, m.ref)
				if p.method == "" || p.step != m.slot.step() {
					continue
				}
				st.mu.Lock()
				_, seen := st.planned[m.ref]
				st.planned[m.ref] = p
				st.mu.Unlock()
				if seen {
					continue // a duplicate message: acknowledged once
				}
				wg.Go(func() {
					select {
					case <-ctx.Done():
						return
					case <-time.After(p.delay):
					}
					var d time.Duration
					var err error
					if p.method == "link" {
						d, err = ackByLink(ctx, m.link)
					} else {
						d, err = ackByGRPC(ctx, client, o, m.ref, actors[p.step], s.idp)
					}
					st.mu.Lock()
					defer st.mu.Unlock()
					if err != nil {
						st.failed[m.ref] = err.Error()
						return
					}
					st.done[m.ref] = time.Now()
					st.durations = append(st.durations, d)
				})
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	return st
}

// ackByLink acknowledges as the mail's recipient does: a POST to the link
// (the acknowledgement service runs with the development identity). A
// refused or failed request is repeated for up to 30 s.
func ackByLink(ctx context.Context, link string) (time.Duration, error) {
	if link == "" {
		return 0, fmt.Errorf("no acknowledge link in the message")
	}
	var last error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; {
		start := time.Now()
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		req, _ := http.NewRequestWithContext(rctx, http.MethodPost, link, nil)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := http.DefaultClient.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start), nil
			}
			err = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		last = err
		time.Sleep(300 * time.Millisecond)
	}
	return 0, fmt.Errorf("acknowledge by link: %w", last)
}

// ackByGRPC acknowledges through the gRPC API as the step's recipient,
// with one request id (a repeat returns the original outcome).
func ackByGRPC(ctx context.Context, client ackv1.AcknowledgementServiceClient, o *observer, ref, actor string, idp *harness.IDP) (time.Duration, error) {
	idp.Add(actor, "RZZ:clinician")
	tok, err := idp.Provider.Token(ctx, harness.TestClient, harness.TestRedirect, actor, "AAL3_ANY", harness.Audience)
	if err != nil {
		return 0, err
	}
	as := grpc.PerRPCCredentials(authn.Bearer(authn.StaticToken(tok.AccessToken)))
	var last error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; {
		id, ok := o.alertOfRef(ref)
		if !ok {
			last = fmt.Errorf("alert %s not on the log yet", ref)
			time.Sleep(200 * time.Millisecond)
			continue
		}
		start := time.Now()
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := client.Acknowledge(rctx, &ackv1.AcknowledgeRequest{
			AlertId: id, RequestId: "chaos-ack-" + id,
		}, as)
		cancel()
		if err == nil {
			return time.Since(start), nil
		}
		last = err
		switch status.Code(err) {
		case codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated:
			return 0, err
		}
		time.Sleep(300 * time.Millisecond)
	}
	return 0, fmt.Errorf("acknowledge by gRPC: %w", last)
}
