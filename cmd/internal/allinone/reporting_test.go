package allinone

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/testinfra"
)

// TestMakeRunCompliancePageIsLive: with a PostgreSQL (HERALD_POSTGRES_URL,
// here the test's), make run hands it to the console, whose projector
// fills the reporting store from the running system's log: the demo safety
// lead's compliance page shows the simulated alerts instead of "not
// configured".
func TestMakeRunCompliancePageIsLive(t *testing.T) {
	var workDir string
	st, _ := startRun(t, 2*time.Minute, func(c *Config) {
		c.Every = 500 * time.Millisecond
		c.Feed = false
		c.PostgresURL = testinfra.NewPostgres(t)
		workDir = c.WorkDir
	})
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: time.Minute, Transport: &http.Transport{DisableKeepAlives: true}} // no re-sent request: a verifier is single use
	get := func(path string) string {
		t.Helper()
		resp, err := client.Get(st.Dashboard + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s\n%s", path, resp.Status, b)
		}
		return string(b)
	}
	// The demo safety lead of RZZ signs in through the development provider
	// (Hydra signs in the subject the hint names).
	// A sign-in is retried from the start (Hydra under load has refused a
	// flow's consent verifier as used; platform/devidp retries too).
	for try := 1; ; try++ {
		resp, err := client.Get(st.Dashboard + "/auth/login?return=/&login_hint=rzz-safety-lead-morgan")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			break
		}
		if try == 3 {
			t.Fatalf("sign-in of the safety lead: %s\n%s", resp.Status, b)
		}
		t.Logf("sign-in of the safety lead, try %d: %s %.300s", try, resp.Status, b)
	}
	// Alerts due: acknowledged by the simulator, or past their deadline.
	due := regexp.MustCompile(`(?s)id="table-category".*?<th scope="row" class="nhsuk-table__cell">[^<]+</th>\s*<td class="nhsuk-table__cell">(\d+)</td>`)
	var page string
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		page = get("/compliance?trust=RZZ")
		if m := due.FindStringSubmatch(page); m != nil {
			if n, _ := strconv.Atoi(m[1]); n > 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the compliance page shows no alert due of RZZ within 3 minutes:\n%s\nservice logs: %s",
				page, tail(readFile(filepath.Join(workDir, "services.log")), 4096))
		}
	}
}
