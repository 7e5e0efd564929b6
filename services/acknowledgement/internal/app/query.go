package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/herald-health/herald/platform/fault"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/acknowledgement/lifecycle"
)

// Lister pages through the projection, newest raised first. Scan returns up
// to n states of tenant ("" for all) after cursor ("" to start) and the
// cursor after the last one ("" when there are no more); a cursor is
// "<raised-at ms>:<alert id>". A bad cursor is fault.ErrInvalid.
//
// ScanByDeadline pages the open alerts of tenant ("" for all) in the
// worklist's order (lifecycle.DeadlineOrder, ascending: overdue first, no
// deadline last) from an index, not a scan of every alert; its cursor is
// "<order score>:<alert id>".
type Lister interface {
	Scan(ctx context.Context, tenant, cursor string, n int) ([]*lifecycle.State, string, error)
	ScanByDeadline(ctx context.Context, tenant, cursor string, n int) ([]*lifecycle.State, string, error)
}

// OrderBuilder builds the deadline-order index of a projection stored
// before the index existed, once, from the open states Recover reads
// (optional: a Lister or RecoveryStore that implements it is called).
type OrderBuilder interface {
	BuildDeadlineOrder(ctx context.Context, open []*lifecycle.State) error
}

// Get returns the state of an alert (with its timeline) or NotFound.
func (a *App) Get(ctx context.Context, alertID string) (*lifecycle.State, error) {
	if alertID == "" {
		return nil, fault.Invalid("get alert", fault.Violation{Field: "alert_id", Problem: "is required"})
	}
	st, err := a.d.States.Get(ctx, alertID)
	if errors.Is(err, ErrRetired) {
		return nil, fault.NotFound("alert " + alertID + " was closed and is no longer in the live store (its history is in the console's reporting)")
	}
	if err != nil {
		return nil, fmt.Errorf("get alert %s: %w", alertID, err)
	}
	if st == nil || st.GetState() == 0 {
		return nil, fault.NotFound("alert " + alertID + " not found")
	}
	return st, nil
}

// ListFilter selects alerts; zero fields match everything.
type ListFilter struct {
	Tenant string
	// Tenants, when set, is the trusts an alert must belong to (the
	// caller's trusts, platform/authz/access).
	Tenants     []string
	States      []ackv1.State
	Category    eventsv1.Category
	OverdueOnly bool
	Assignee    string
	// Order is the order of the pages: unset, newest raised first;
	// LIST_ORDER_DEADLINE_ASC, the worklist's (open alerts only).
	Order ackv1.ListOrder
}

// Page bounds.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
	// scanBudget bounds the alerts one List call examines; a page may come
	// back short with a next token when filters are selective.
	scanBudget = 5000
)

// List returns one page of alerts matching f and the token of the next page
// ("" when there are no more).
func (a *App) List(ctx context.Context, f ListFilter, pageSize int, token string) ([]*lifecycle.State, string, error) {
	switch {
	case pageSize < 0:
		return nil, "", fault.Invalid("list alerts", fault.Violation{Field: "page_size", Problem: "must not be negative"})
	case pageSize == 0:
		pageSize = DefaultPageSize
	case pageSize > MaxPageSize:
		pageSize = MaxPageSize
	}
	for _, s := range f.States {
		if _, ok := ackv1.State_name[int32(s)]; !ok || s == 0 {
			return nil, "", fault.Invalid("list alerts", fault.Violation{Field: "states", Problem: fmt.Sprintf("unknown state %d", s)})
		}
	}
	if a.d.Lister == nil {
		return nil, "", fault.Unavailable("listing is not configured")
	}
	scan, cursorOf := a.d.Lister.Scan, raisedCursor
	switch f.Order {
	case ackv1.ListOrder_LIST_ORDER_UNSPECIFIED:
	case ackv1.ListOrder_LIST_ORDER_DEADLINE_ASC:
		scan, cursorOf = a.d.Lister.ScanByDeadline, deadlineCursor
	default:
		return nil, "", fault.Invalid("list alerts", fault.Violation{Field: "order", Problem: fmt.Sprintf("unknown order %d", f.Order)})
	}
	now := a.d.Clock.Now()
	var out []*lifecycle.State
	cursor, scanned := token, 0
	for scanned < scanBudget {
		chunk, next, err := scan(ctx, f.Tenant, cursor, pageSize)
		if err != nil {
			return nil, "", fmt.Errorf("list alerts: %w", err)
		}
		for _, st := range chunk {
			scanned++
			cursor = cursorOf(st)
			if !f.match(st, now) {
				continue
			}
			out = append(out, st)
			if len(out) == pageSize {
				if next == "" && st == chunk[len(chunk)-1] {
					return out, "", nil
				}
				return out, cursor, nil
			}
		}
		if next == "" {
			return out, "", nil
		}
		cursor = next
	}
	return out, cursor, nil
}

// deadlineCursor is st's cursor in the deadline order (as ScanByDeadline
// issues it).
func deadlineCursor(st *lifecycle.State) string {
	ms, _ := lifecycle.DeadlineOrder(st)
	return strconv.FormatInt(ms, 10) + ":" + st.GetAlertId()
}

// raisedCursor is st's cursor in the newest-raised-first order (Scan's).
func raisedCursor(st *lifecycle.State) string {
	var ms int64
	if st.GetRaisedAt() != nil {
		ms = st.GetRaisedAt().AsTime().UnixMilli()
	}
	return strconv.FormatInt(ms, 10) + ":" + st.GetAlertId()
}

func (f ListFilter) match(st *lifecycle.State, now time.Time) bool {
	if f.OverdueOnly && !lifecycle.Overdue(st, now) {
		return false
	}
	if f.Tenant != "" && st.GetTenant() != f.Tenant {
		return false
	}
	if len(f.Tenants) > 0 && !slices.Contains(f.Tenants, st.GetTenant()) {
		return false
	}
	if len(f.States) > 0 && !slices.Contains(f.States, st.GetState()) {
		return false
	}
	if f.Category != 0 && st.GetCategory() != f.Category {
		return false
	}
	if f.Assignee != "" && !slices.Contains(lifecycle.Assignees(st), f.Assignee) {
		return false
	}
	return true
}

// Overdue reports whether st is overdue now (for the API layer).
func (a *App) Overdue(st *lifecycle.State) bool { return lifecycle.Overdue(st, a.d.Clock.Now()) }
