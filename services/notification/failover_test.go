package notification_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-health/herald/platform/logging"
	"github.com/herald-health/herald/platform/testinfra"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/notification"
)

// helperReplicaEnv carries a replica's configuration (JSON) to a child
// process that runs it until it is killed.
const helperReplicaEnv = "HERALD_TEST_HELPER_REPLICA"

// TestHelperReplica is not a test: it is the body of a replica run as a
// separate process by the failover measurement, so that it can be
// SIGKILLed. It skips unless started so.
func TestHelperReplica(t *testing.T) {
	raw := os.Getenv(helperReplicaEnv)
	if raw == "" {
		t.Skip("runs only as a child process of the failover measurement")
	}
	var cfg notification.Config
	require.NoError(t, json.Unmarshal([]byte(raw), &cfg))
	_ = notification.Run(context.Background(), cfg, notification.Deps{Logger: logging.New(os.Stderr, -4, "child")})
}

// TestMeasureFailoverAfterKill measures how long a job held by a
// notification replica that is SIGKILLed takes to reach its recipient
// through the other replica, with the default lease: the child replica
// consumes the routing and holds step 0's job (its target resolution
// blocks), the surviving replica runs, the child is killed, and the time
// from the kill to the webhook peer receiving the message is recorded. It
// runs only with HERALD_MEASURE=1 (a measured run for docs/performance.md,
// not a timed unit test); ROUNDS sets how many kills (default 5).
func TestMeasureFailoverAfterKill(t *testing.T) {
	if os.Getenv("HERALD_MEASURE") == "" {
		t.Skip("a measurement: set HERALD_MEASURE=1")
	}
	rounds := 5
	if n, err := strconv.Atoi(os.Getenv("ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	e := newEnv(t, nil)
	def := notification.DefaultConfig()
	e.cfg.Lease, e.cfg.SendTimeout, e.cfg.MaxIdle = def.Lease, def.SendTimeout, def.MaxIdle
	var took []time.Duration
	for r := range rounds {
		// A group of its own each round: a killed child stays a member until
		// its session times out.
		e.cfg.GroupID = testinfra.UniqueName("notification-failover")
		child := e.cfg
		child.SMTPAddr, child.SMTPTLS, child.SMTPUser, child.SMTPPassword = "", nil, "", ""
		//lint:ignore SA1026 SMTPTLS (a *tls.Config, with funcs) is nil here: the child has no email channel.
		raw, err := json.Marshal(child)
		require.NoError(t, err)
		name := fmt.Sprintf("kill-%d", r)
		hook := e.sink.srv.URL + "/hooks/" + name
		e.rules.set(name, person("p-"+name, cp(chWebhook, hook)))
		entered := e.rules.holdFirstResolve()
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperReplica$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperReplicaEnv+"="+string(raw))
		if os.Getenv("HERALD_MEASURE_LOGS") != "" {
			cmd.Stderr = os.Stderr
		}
		require.NoError(t, cmd.Start())
		// Only the child is in the group: it takes the routing.
		require.Eventually(t, func() bool { return len(e.groupMembers()) == 1 }, 60*time.Second, 50*time.Millisecond, "child joined")
		id := alertID(name)
		e.append(routedEvent(id, eventsv1.Category_CATEGORY_CRITICAL, step(0, nil, role(name))))
		waitClosed(t, entered, "the child resolving step 0")
		// The child has committed its offsets (200 ms after handling): killed before,
		// its partition's records count as unhandled and the send waits for
		// the group to hand the partition on (the session timeout).
		testinfra.WaitCommitted(t, e.cfg.Log.Brokers, e.cfg.Log.EventsTopic, 30*time.Second, e.cfg.GroupID)
		_, stop := e.start() // the survivor
		killed := time.Now()
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
		require.Eventually(t, func() bool { return len(e.sink.on("/hooks/"+name)) > 0 }, 2*time.Minute, 5*time.Millisecond, "the survivor sends")
		d := e.sink.on("/hooks/" + name)[0].Created.Sub(killed)
		took = append(took, d)
		t.Logf("round %d: message %v after the kill (lease %v)", r, d.Round(time.Millisecond), e.cfg.Lease)
		stop()
		if os.Getenv("HERALD_MEASURE_LOGS") != "" {
			t.Log(e.logs.String())
		}
	}
	slices.Sort(took)
	t.Logf("held job to recipient after SIGKILL, %d kills, lease %v: min %v, median %v, max %v", len(took), e.cfg.Lease,
		took[0].Round(time.Millisecond), took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
}
