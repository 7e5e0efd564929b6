package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-health/herald/e2e/harness"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
)

// allAlerts waits until n alerts are listed and returns their ids.
func allAlerts(t *testing.T, sys *harness.System, n int, within time.Duration) []string {
	t.Helper()
	var ids []string
	harness.Eventually(t, within, func() bool {
		resp, err := sys.Ack.ListAlerts(context.Background(), &ackv1.ListAlertsRequest{Tenant: "RZZ", PageSize: 100})
		if err != nil {
			return false
		}
		ids = ids[:0]
		for _, a := range resp.GetAlerts() {
			ids = append(ids, a.GetAlertId())
		}
		return len(ids) == n
	}, func() string { return fmt.Sprintf("%d alerts listed, want %d", len(ids), n) })
	return ids
}

// assertCompletedOnce checks that every alert reached the fail-safe queue
// once and that each recipient of each step (fail-safe officer included)
// got exactly one message.
func assertCompletedOnce(t *testing.T, sys *harness.System, ids []string, within time.Duration) {
	t.Helper()
	for _, id := range ids {
		waitState(t, sys, id, ackv1.State_STATE_FAILSAFE, within)
	}
	sys.WaitQuiet(t, within) // every message that will be sent has been
	for _, id := range ids {
		assertEachStepToldOnce(t, sys, id)
		tl := types(getAlert(t, sys, id))
		if count(tl, "FailsafeQueued") != 1 {
			t.Errorf("alert %s: fail-safe queued %d times: %v", id, count(tl, "FailsafeQueued"), tl)
		}
	}
}

// kill -9 of each service in turn while alerts are in flight: nothing is
// lost and no recipient gets a second message for the same alert and step.
func TestKillEachServiceMidFlow(t *testing.T) {
	sys := start(t)
	for i, name := range harness.Services {
		send(t, sys, oru(fmt.Sprintf("MSG-KILL-%d", i), fmt.Sprintf("ACC-KILL-%d", i), "F", "CRITICAL"))
		time.Sleep(1500 * time.Millisecond)
		t.Logf("kill -9 %s", name)
		sys.Restart(t, name)
	}
	ids := allAlerts(t, sys, len(harness.Services), 60*time.Second)
	assertCompletedOnce(t, sys, ids, 120*time.Second)
	assertNoPatientData(t, sys)
}

// Redis wiped mid-flow (FLUSHDB of the system's database: what FLUSHALL
// does to a Redis of its own): escalations still happen on time.
func TestRedisFlushMidFlowEscalatesOnTime(t *testing.T) {
	sys := start(t)
	send(t, sys, oru("MSG-FLUSH-1", "ACC-FLUSH-1", "F", "CRITICAL"))
	id := alertIDOf(t, sys, 30*time.Second)
	waitMail(t, sys, id, referrer, 30*time.Second)
	if err := sys.Redis.FlushDB(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("timeline: %v", types(getAlert(t, sys, id)))
			t.Logf("notification logs:\n%s", tailBytes(sys.Procs["notification"].Logs(), 6000))
		}
	})
	assertCompletedOnce(t, sys, []string{id}, 60*time.Second)
	assertClimbedOnTime(t, sys, id, 3)
}

// An operator's `heraldctl rebuild acknowledgement` mid-flow: the service
// restores its state from the state topic and re-arms its timers, and the
// escalation still comes on time, once.
func TestHeraldctlRebuildMidFlowKeepsEscalationOnTime(t *testing.T) {
	sys := start(t)
	send(t, sys, oru("MSG-RB-1", "ACC-RB-1", "F", "CRITICAL"))
	id := alertIDOf(t, sys, 30*time.Second)
	waitMail(t, sys, id, referrer, 30*time.Second)
	ns := ""
	for _, kv := range sys.Procs["acknowledgement"].Env() {
		if v, ok := strings.CutPrefix(kv, "HERALD_REDIS_NAMESPACE="); ok {
			ns = v
		}
	}
	out, err := exec.Command(bins["heraldctl"], "rebuild", "-redis", sys.Redis.Options().Addr,
		"-redis-db", fmt.Sprint(sys.Redis.Options().DB), "-namespace", ns, "acknowledgement").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "will rebuild") {
		t.Fatalf("heraldctl rebuild: %v\n%s", err, out)
	}
	harness.Eventually(t, 10*time.Second, func() bool {
		return strings.Contains(string(sys.Procs["acknowledgement"].Logs()), "alert projection restored from the state topic")
	}, func() string { return "the acknowledgement service did not rebuild" })
	assertCompletedOnce(t, sys, []string{id}, 60*time.Second)
	assertClimbedOnTime(t, sys, id, 3)
}

// A Kafka broker restart mid-flow: every alert completes, once.
func TestKafkaRestartMidFlowEveryAlertCompletes(t *testing.T) {
	sys := start(t)
	for i := 0; i < 3; i++ {
		send(t, sys, oru(fmt.Sprintf("MSG-KR-%d", i), fmt.Sprintf("ACC-KR-%d", i), "F", "CRITICAL"))
	}
	ids := allAlerts(t, sys, 3, 30*time.Second)
	waitMail(t, sys, ids[0], referrer, 30*time.Second)

	script := filepath.Join(harness.RepoRoot(t), "platform", "infra", "deps.sh")
	restart := time.Now()
	if out, err := exec.Command(script, "kafka-restart").CombinedOutput(); err != nil {
		t.Fatalf("restart kafka: %v\n%s", err, out)
	}
	t.Logf("kafka restarted in %v", time.Since(restart))
	assertCompletedOnce(t, sys, ids, 180*time.Second)
}

func tailBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
