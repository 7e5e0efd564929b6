package bundle

import (
	"time"
)

// Rota answers who holds an on-call role at an instant. Its weekly pattern
// is in the trust's local time (wall clock), so a shift from 20:00 to 08:00
// ends at 08:00 local time on the morning after a daylight-saving change
// (and is an hour shorter or longer in absolute time that night). Overrides
// replace the pattern for their interval.
type Rota struct {
	ID   string
	Name string
	// Role labels people contacted through the rota: "oncall:<id>".
	Role string
	// RemoteRole labels them when another trust contacts them:
	// "oncall:<tenant>/<id>".
	RemoteRole string
	Shifts     []Shift
	Overrides  []Override
	loc        *time.Location
}

// Shift is one weekly recurring shift: it starts on each of its days at
// Start (minutes after local midnight) and ends at End the same day, or the
// next day when End is not after Start (End equal to Start is 24 hours).
type Shift struct {
	Days   [7]bool // indexed by time.Weekday
	Start  int
	End    int
	People []string
}

// Override replaces the pattern between From (inclusive) and To (exclusive).
type Override struct {
	From   time.Time
	To     time.Time
	People []string
	Reason string
}

// OnCall returns the ids of the people on call at t, in rota order without
// repeats; empty when nobody is.
func (r *Rota) OnCall(t time.Time) []string {
	var out []string
	overridden := false
	for _, o := range r.Overrides {
		if !t.Before(o.From) && t.Before(o.To) {
			overridden = true
			out = appendUnique(out, o.People...)
		}
	}
	if overridden {
		return out
	}
	// Compare on the local wall clock: a shift from 20:00 to 08:00 covers
	// exactly the instants whose local time lies in it, whatever the offset
	// that night. A boundary in the spring gap takes effect at the first
	// instant after it; one in the repeated autumn hour applies to both
	// occurrences of that hour.
	lt := t.In(r.loc)
	h, m, _ := lt.Clock()
	now := h*60 + m // minutes after local midnight
	today := lt.Weekday()
	yesterday := (today + 6) % 7
	for i := range r.Shifts {
		s := &r.Shifts[i]
		overnight := s.End <= s.Start
		switch {
		case s.Days[today] && now >= s.Start && (overnight || now < s.End):
			out = appendUnique(out, s.People...)
		case overnight && s.Days[yesterday] && now < s.End:
			out = appendUnique(out, s.People...)
		}
	}
	return out
}

func appendUnique(out []string, ids ...string) []string {
next:
	for _, id := range ids {
		for _, have := range out {
			if have == id {
				continue next
			}
		}
		out = append(out, id)
	}
	return out
}
