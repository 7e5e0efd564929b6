package app

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/herald-health/herald/platform/clock"
	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/logging"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/notification/internal/channel"
	"github.com/herald-health/herald/services/notification/internal/domain"
)

const (
	fuzzReceiptSecret = "receipt-secret-for-fuzzing"
	fuzzMaxSkew       = 5 * time.Minute
	knownNID          = "n-known"
	knownAlert        = "alert-known"
)

// receiptStore is the part of Store the receipts endpoint uses, in memory,
// holding one notification (knownNID of knownAlert). Any other method is
// the embedded nil Store: a call panics and fails the fuzz.
type receiptStore struct {
	Store
	mu          sync.Mutex
	records     map[string]Record
	rescheduled []Job
}

func newReceiptStore() *receiptStore {
	return &receiptStore{records: map[string]Record{knownNID: {NotificationID: knownNID, AlertID: knownAlert, Tenant: "RZZ",
		PersonID: "p1", Channel: eventsv1.Channel_CHANNEL_SMS, Phase: domain.PhaseRecorded, Attempts: 1}}}
}

func (s *receiptStore) AlertOf(_ context.Context, nid string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.records[nid].AlertID, nil
}

func (s *receiptStore) Record(_ context.Context, alertID, nid string) (Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.records[nid]; r.AlertID == alertID {
		return r, nil
	}
	return Record{}, nil
}

func (s *receiptStore) PutRecord(_ context.Context, r Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records[r.NotificationID] = r
	return nil
}

func (s *receiptStore) DigestRefs(context.Context, string) ([]DigestRef, error) { return nil, nil }

func (s *receiptStore) Reschedule(_ context.Context, j Job, _ time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rescheduled = append(s.rescheduled, j)
	return nil
}

func (s *receiptStore) Alert(_ context.Context, id string) (domain.Alert, error) {
	return domain.Alert{ID: id, Tenant: "RZZ"}, nil
}

func (s *receiptStore) known() Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.records[knownNID]
}

// appended records what the endpoint appends.
type appended struct {
	mu     sync.Mutex
	events []*eventsv1.Event
}

func (a *appended) Append(_ context.Context, evs ...*eventsv1.Event) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, evs...)
	return nil
}

func receiptsHandler(clk clock.Clock, store Store, log Appender) http.Handler {
	api := NewAPI(&Engine{o: Options{Clock: clk, Logger: logging.Discard(), Store: store, Log: log}})
	return api.ReceiptsHandler([]byte(fuzzReceiptSecret), fuzzMaxSkew, "")
}

func postReceipt(h http.Handler, body []byte, ts, sig string) int {
	req := httptest.NewRequest(http.MethodPost, "/v1/receipts", bytes.NewReader(body))
	req.Header.Set(channel.HeaderTimestamp, ts)
	req.Header.Set(channel.HeaderSignature, sig)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Code
}

// FuzzReceipts: whatever the body, timestamp and signature, the receipts
// endpoint never panics and never acts on a report it cannot verify: 401,
// nothing appended, no record touched.
func FuzzReceipts(f *testing.F) {
	f.Add([]byte(`{"reference":"n-known","id":"x","status":"delivered"}`), "1700000000", "sha256=00")
	f.Add([]byte(``), "", "")
	f.Add([]byte(`{`), "-1", "sha256=")
	f.Fuzz(func(t *testing.T, body []byte, ts, sig string) {
		store, log := newReceiptStore(), &appended{}
		h := receiptsHandler(clock.Real{}, store, log)
		before := store.known()
		if code := postReceipt(h, body, ts, sig); code != http.StatusUnauthorized {
			t.Fatalf("got status %d for an unsigned report, want 401", code)
		}
		if len(log.events) != 0 || store.known() != before {
			t.Fatalf("an unsigned report changed something: appended %v, record %+v", log.events, store.known())
		}
	})
}

// FuzzVerifiedReceipts signs whatever body the fuzzer makes, at a
// timestamp skewed by skew seconds, and checks what the endpoint does with
// a report it can verify: a stale one is refused (401); an unreadable one,
// or one without reference or status, is a bad request (400); an unknown
// reference is 404; "delivered" appends exactly one NotificationDelivered
// with the deterministic id and marks the record delivered (204); any
// failure (FailureStatus) appends one NotificationFailed, marks the record
// failed and makes the person's job due (204); any other status is noted
// on the record and appends nothing (202). It never
// answers 5xx with a healthy store, and nothing else changes.
func FuzzVerifiedReceipts(f *testing.F) {
	for _, s := range []struct {
		body string
		skew int64
	}{
		{`{"reference":"n-known","id":"r-1","status":"delivered"}`, 0},
		{`{"reference":"n-known","id":"r-1","status":"delivered"}`, 301},
		{`{"reference":"n-known","id":"r-1","status":"delivered"}`, -300},
		{`{"reference":"n-known","status":"permanent-failure"}`, 12},
		{`{"reference":"n-unknown","status":"delivered"}`, 0},
		{`{"status":"delivered"}`, 0},
		{`{"reference":"n-known"}`, 0},
		{`{"Reference":"n-known","STATUS":"delivered","extra":[1,2]}`, 0},
		{`{`, 0},
		{`null`, 0},
	} {
		f.Add([]byte(s.body), s.skew)
	}
	now := time.Date(2026, 11, 29, 15, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte, skew int64) {
		store, log := newReceiptStore(), &appended{}
		h := receiptsHandler(clock.NewSimulated(now), store, log)
		before := store.known()
		ts := strconv.FormatInt(now.Unix()+skew, 10)
		code := postReceipt(h, body, ts, channel.Sign([]byte(fuzzReceiptSecret), ts, body))
		after := store.known()
		unchanged := func(why string) {
			t.Helper()
			if len(log.events) != 0 || after != before {
				t.Fatalf("%s: got status %d, appended %v, record %+v; want nothing changed", why, code, log.events, after)
			}
		}

		if skew > int64(fuzzMaxSkew/time.Second) || skew < -int64(fuzzMaxSkew/time.Second) {
			if code != http.StatusUnauthorized {
				t.Fatalf("a report %d s off the clock: got status %d, want 401", skew, code)
			}
			unchanged("stale report")
			return
		}
		var rc Receipt
		if err := json.Unmarshal(body, &rc); err != nil || rc.Reference == "" || rc.Status == "" {
			if code != http.StatusBadRequest {
				t.Fatalf("body %q: got status %d, want 400", body, code)
			}
			unchanged("unreadable report")
			return
		}
		if rc.Reference != knownNID {
			if code != http.StatusNotFound {
				t.Fatalf("unknown reference %q: got status %d, want 404", rc.Reference, code)
			}
			unchanged("unknown reference")
			return
		}
		if FailureStatus(rc.Status) {
			want := before
			want.Phase, want.LastError, want.UpdatedAt = domain.PhaseFailed, "provider reported "+rc.Status, now
			if code != http.StatusNoContent || len(log.events) != 1 || after != want || len(store.rescheduled) != 1 {
				t.Fatalf("status %q: got %d, appended %v, record %+v, jobs %v; want 204, one NotificationFailed, record %+v, the person's job due",
					rc.Status, code, log.events, after, store.rescheduled, want)
			}
			f := log.events[0].GetNotificationFailed()
			if log.events[0].GetEventId() != eventlog.ID(knownNID, "receipt", rc.Status) || f.GetNotificationId() != knownNID || !f.GetPermanent() {
				t.Fatalf("status %q: appended %v", rc.Status, log.events[0])
			}
			return
		}
		if rc.Status != "delivered" {
			want := before
			want.LastError, want.UpdatedAt = "provider reported "+rc.Status, now
			if code != http.StatusAccepted || len(log.events) != 0 || after != want {
				t.Fatalf("status %q: got %d, appended %v, record %+v; want 202, nothing appended, record %+v", rc.Status, code, log.events, after, want)
			}
			return
		}
		if code != http.StatusNoContent || len(log.events) != 1 {
			t.Fatalf("delivered: got status %d and %d events, want 204 and one NotificationDelivered", code, len(log.events))
		}
		ev := log.events[0]
		d := ev.GetNotificationDelivered()
		if ev.GetEventId() != eventlog.ID(knownNID, "delivered") || ev.GetAlertId() != knownAlert || d.GetNotificationId() != knownNID ||
			d.GetChannel() != before.Channel || d.GetProviderReceiptId() != rc.ID {
			t.Fatalf("delivered: appended %v", ev)
		}
		want := before
		want.Phase, want.UpdatedAt = domain.PhaseDelivered, now
		if after != want {
			t.Fatalf("delivered: record %+v, want %+v", after, want)
		}
	})
}
