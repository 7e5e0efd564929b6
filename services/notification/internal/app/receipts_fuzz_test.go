package app

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/logging"
)

// FuzzReceipts: whatever the body, timestamp and signature, the receipts
// endpoint never panics and never accepts a report it cannot verify.
func FuzzReceipts(f *testing.F) {
	f.Add([]byte(`{"reference":"n1","id":"x","status":"delivered"}`), "1700000000", "sha256=00")
	f.Add([]byte(``), "", "")
	f.Add([]byte(`{`), "-1", "sha256=")
	api := NewAPI(&Engine{o: Options{Clock: clock.Real{}, Logger: logging.Discard()}})
	h := api.ReceiptsHandler([]byte("receipt-secret-for-fuzzing"), 5*time.Minute)
	f.Fuzz(func(t *testing.T, body []byte, ts, sig string) {
		req := httptest.NewRequest(http.MethodPost, "/v1/receipts", bytes.NewReader(body))
		req.Header.Set("X-Herald-Timestamp", ts)
		req.Header.Set("X-Herald-Signature", sig)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusUnauthorized {
			t.Fatalf("got status %d for an unsigned report, want 401", w.Code)
		}
	})
}
