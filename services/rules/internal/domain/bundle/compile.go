package bundle

import (
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	// The trust's time zone must resolve on hosts without a zoneinfo database.
	_ "time/tzdata"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// DefaultTimezone is the time zone of a bundle that names none.
const DefaultTimezone = "Europe/London"

var (
	odsTrust  = regexp.MustCompile(`^[A-Z0-9]{3}$`)
	idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$`)
	codeLocal = regexp.MustCompile(`^[A-Z][A-Z0-9_]{1,31}$`)
	gmcNumber = regexp.MustCompile(`^[0-9]{7}$`)
	e164      = regexp.MustCompile(`^\+[1-9][0-9]{7,14}$`)
	email     = regexp.MustCompile(`^[A-Za-z0-9.!#$%&'*+/=?^_{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$`)
)

// compile validates the merged sections and builds the Bundle. Problems go to
// c; the result is only meaningful when c has none.
func compile(c *checker, m *merged) *Bundle {
	b := &Bundle{
		Policies:    map[string]*Policy{},
		People:      map[string]*Person{},
		Teams:       map[string]*Team{},
		Rotas:       map[string]*Rota{},
		categories:  map[string]*Category{},
		byClinician: map[string]*Person{},
		teamByAlias: map[string]*Team{},
	}
	anyFile := ""
	for _, s := range m.scalars {
		if anyFile == "" || s.file < anyFile {
			anyFile = s.file
		}
	}
	tenant, ok := m.scalars["tenant"]
	switch {
	case !ok:
		c.add(anyFile, "tenant", "is required: the trust's ODS code, e.g. RZZ")
	case !odsTrust.MatchString(tenant.v):
		c.add(tenant.file, "tenant", fmt.Sprintf("%q is not a trust ODS code (3 upper-case letters or digits)", tenant.v))
	default:
		b.Tenant = tenant.v
	}
	if v, ok := m.scalars["version"]; ok {
		b.Version = v.v
		b.VersionFile = v.file
	} else {
		c.add(anyFile, "version", "is required: the bundle version recorded on every routed alert")
	}
	b.Name = m.scalars["name"].v
	b.Location, _ = time.LoadLocation(DefaultTimezone)
	if tz, ok := m.scalars["timezone"]; ok {
		loc, err := time.LoadLocation(tz.v)
		if err != nil {
			c.add(tz.file, "timezone", fmt.Sprintf("%q is not a known time zone", tz.v))
		} else {
			b.Location = loc
		}
	}

	compilePeople(c, m, b)
	compileTeams(c, m, b)
	compileRotas(c, m, b)
	compilePolicies(c, m, b)
	compileCategories(c, m, b)
	compileRules(c, m, b)
	compileFailsafe(c, m, b, anyFile)
	return b
}

func checkID(c *checker, file, path, id string, seen map[string]string, what string) bool {
	switch {
	case id == "":
		c.add(file, path, "is required")
		return false
	case !idPattern.MatchString(id):
		c.add(file, path, fmt.Sprintf("%q is not a valid %s id (letters, digits, '.', '_', ':', '-'; at most 64)", id, what))
		return false
	}
	if prev, dup := seen[id]; dup {
		c.add(file, path, fmt.Sprintf("%s id %q is already used at %s", what, id, prev))
		return false
	}
	seen[id] = file + ": " + path
	return true
}

func compilePeople(c *checker, m *merged, b *Bundle) {
	seen := map[string]string{}
	clinician := map[string]string{}
	for _, l := range m.people {
		d := l.v
		ok := checkID(c, l.file, l.path+".id", d.ID, seen, "person")
		p := &Person{ID: d.ID, Name: d.Name, GMC: d.GMC}
		if d.GMC != "" {
			if !gmcNumber.MatchString(d.GMC) {
				c.add(l.file, l.path+".gmc", fmt.Sprintf("%q is not a GMC number (7 digits)", d.GMC))
			} else if prev, dup := clinician[d.GMC]; dup {
				c.add(l.file, l.path+".gmc", fmt.Sprintf("GMC number %s is already given to %s", d.GMC, prev))
			} else {
				clinician[d.GMC] = d.ID
			}
		}
		for i, id := range d.IDs {
			path := fmt.Sprintf("%s.ids[%d]", l.path, i)
			switch prev, dup := clinician[id]; {
			case id == "":
				c.add(l.file, path, "is empty")
			case dup:
				c.add(l.file, path, fmt.Sprintf("clinician id %q is already given to %s", id, prev))
			default:
				clinician[id] = d.ID
				p.IDs = append(p.IDs, id)
			}
		}
		if len(d.Contacts) == 0 {
			c.add(l.file, l.path+".contacts", "is required: at least one contact point")
		}
		for i, cd := range d.Contacts {
			path := fmt.Sprintf("%s.contacts[%d]", l.path, i)
			ch, okc := parseChannel(c, l.file, path+".channel", cd.Channel)
			if !okc {
				continue
			}
			if problem := checkAddress(ch, cd.Address); problem != "" {
				c.add(l.file, path+".address", problem)
				continue
			}
			p.Contacts = append(p.Contacts, Contact{Channel: ch, Address: cd.Address})
		}
		if ok {
			b.People[d.ID] = p
		}
	}
	for id, personID := range clinician {
		if p, ok := b.People[personID]; ok {
			b.byClinician[id] = p
		}
	}
}

func parseChannel(c *checker, file, path, s string) (eventsv1.Channel, bool) {
	switch s {
	case "email":
		return eventsv1.Channel_CHANNEL_EMAIL, true
	case "sms":
		return eventsv1.Channel_CHANNEL_SMS, true
	case "teams":
		return eventsv1.Channel_CHANNEL_TEAMS, true
	case "webhook":
		return eventsv1.Channel_CHANNEL_WEBHOOK, true
	case "log":
		return eventsv1.Channel_CHANNEL_LOG, true
	case "":
		c.add(file, path, "is required: one of email, sms, teams, webhook, log")
	default:
		c.add(file, path, fmt.Sprintf("%q is not a channel: one of email, sms, teams, webhook, log", s))
	}
	return eventsv1.Channel_CHANNEL_UNSPECIFIED, false
}

// checkAddress returns a problem with the address for the channel, or "".
// It never echoes the address (contact details stay out of logs).
func checkAddress(ch eventsv1.Channel, addr string) string {
	if addr == "" {
		return "is required"
	}
	switch ch {
	case eventsv1.Channel_CHANNEL_EMAIL:
		if !email.MatchString(addr) {
			return "is not an email address"
		}
	case eventsv1.Channel_CHANNEL_SMS:
		if !e164.MatchString(addr) {
			return "is not a phone number in international form (+447700900123)"
		}
	case eventsv1.Channel_CHANNEL_WEBHOOK:
		u, err := url.Parse(addr)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return "is not an http(s) URL"
		}
	}
	return ""
}

func compileTeams(c *checker, m *merged, b *Bundle) {
	seen := map[string]string{}
	aliases := map[string]string{}
	for _, l := range m.teams {
		d := l.v
		ok := checkID(c, l.file, l.path+".id", d.ID, seen, "team")
		t := &Team{ID: d.ID, Name: d.Name, Role: "team:" + d.ID}
		if len(d.Members) == 0 {
			c.add(l.file, l.path+".members", "is required: at least one person")
		}
		for i, pid := range d.Members {
			path := fmt.Sprintf("%s.members[%d]", l.path, i)
			p, okp := b.People[pid]
			if !okp {
				c.add(l.file, path, fmt.Sprintf("person %q is not in the directory", pid))
				continue
			}
			t.Members = append(t.Members, pid)
			if ok {
				p.Teams = append(p.Teams, d.ID)
			}
		}
		for i, a := range d.Aliases {
			path := fmt.Sprintf("%s.aliases[%d]", l.path, i)
			if a == "" {
				c.add(l.file, path, "is empty")
				continue
			}
			if prev, dup := aliases[a]; dup {
				c.add(l.file, path, fmt.Sprintf("alias %q is already used by team %s", a, prev))
				continue
			}
			aliases[a] = d.ID
			t.Aliases = append(t.Aliases, a)
		}
		if ok {
			b.Teams[d.ID] = t
		}
	}
	for a, id := range aliases {
		if t, ok := b.Teams[id]; ok {
			b.teamByAlias[a] = t
		}
	}
}

func checkPeople(c *checker, file, path string, ids []string, b *Bundle) []string {
	if len(ids) == 0 {
		c.add(file, path, "is required: at least one person")
		return nil
	}
	var out []string
	for i, id := range ids {
		if _, ok := b.People[id]; !ok {
			c.add(file, fmt.Sprintf("%s[%d]", path, i), fmt.Sprintf("person %q is not in the directory", id))
			continue
		}
		out = append(out, id)
	}
	return out
}

func compileRotas(c *checker, m *merged, b *Bundle) {
	seen := map[string]string{}
	for _, l := range m.rotas {
		d := l.v
		ok := checkID(c, l.file, l.path+".id", d.ID, seen, "rota")
		r := &Rota{ID: d.ID, Name: d.Name, Role: "oncall:" + d.ID, RemoteRole: "oncall:" + b.Tenant + "/" + d.ID, loc: b.Location}
		if len(d.Shifts) == 0 && len(d.Overrides) == 0 {
			c.add(l.file, l.path+".shifts", "is required: at least one shift")
		}
		for i, sd := range d.Shifts {
			path := fmt.Sprintf("%s.shifts[%d]", l.path, i)
			var s Shift
			if len(sd.Days) == 0 {
				c.add(l.file, path+".days", "is required: mon..sun, weekdays, weekend or daily")
			}
			for j, day := range sd.Days {
				if !setDays(&s.Days, day) {
					c.add(l.file, fmt.Sprintf("%s.days[%d]", path, j), fmt.Sprintf("%q is not a day: mon, tue, wed, thu, fri, sat, sun, weekdays, weekend or daily", day))
				}
			}
			s.Start, _ = parseClock(c, l.file, path+".start", sd.Start)
			s.End, _ = parseClock(c, l.file, path+".end", sd.End)
			s.People = checkPeople(c, l.file, path+".people", sd.People, b)
			r.Shifts = append(r.Shifts, s)
		}
		for i, od := range d.Overrides {
			path := fmt.Sprintf("%s.overrides[%d]", l.path, i)
			from, okF := parseLocal(c, l.file, path+".from", od.From, b.Location)
			to, okT := parseLocal(c, l.file, path+".to", od.To, b.Location)
			if okF && okT && !to.After(from) {
				c.add(l.file, path+".to", "must be after from")
			}
			people := checkPeople(c, l.file, path+".people", od.People, b)
			r.Overrides = append(r.Overrides, Override{From: from, To: to, People: people, Reason: od.Reason})
		}
		if ok {
			b.Rotas[d.ID] = r
		}
	}
}

func setDays(days *[7]bool, s string) bool {
	switch strings.ToLower(s) {
	case "mon", "monday":
		days[time.Monday] = true
	case "tue", "tuesday":
		days[time.Tuesday] = true
	case "wed", "wednesday":
		days[time.Wednesday] = true
	case "thu", "thursday":
		days[time.Thursday] = true
	case "fri", "friday":
		days[time.Friday] = true
	case "sat", "saturday":
		days[time.Saturday] = true
	case "sun", "sunday":
		days[time.Sunday] = true
	case "weekdays":
		for d := time.Monday; d <= time.Friday; d++ {
			days[d] = true
		}
	case "weekend":
		days[time.Saturday], days[time.Sunday] = true, true
	case "daily":
		for d := range days {
			days[d] = true
		}
	default:
		return false
	}
	return true
}

// parseClock parses "HH:MM" into minutes after midnight.
func parseClock(c *checker, file, path, s string) (int, bool) {
	if s == "" {
		c.add(file, path, `is required: a local time of day "HH:MM"`)
		return 0, false
	}
	t, err := time.Parse("15:04", s)
	if err != nil || len(s) != 5 {
		c.add(file, path, fmt.Sprintf(`%q is not a local time of day "HH:MM" (00:00 to 23:59)`, s))
		return 0, false
	}
	return t.Hour()*60 + t.Minute(), true
}

// parseLocal parses a local date-time "2006-01-02T15:04" in loc, or an
// RFC 3339 instant with an offset.
func parseLocal(c *checker, file, path, s string, loc *time.Location) (time.Time, bool) {
	if s == "" {
		c.add(file, path, `is required: a local date-time "2006-01-02T15:04"`)
		return time.Time{}, false
	}
	if t, err := time.ParseInLocation("2006-01-02T15:04", s, loc); err == nil {
		return t, true
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, true
	}
	c.add(file, path, fmt.Sprintf(`%q is not a local date-time "2006-01-02T15:04"`, s))
	return time.Time{}, false
}

// maxDays bounds a duration in days (ten years).
const maxDays = 3650

// ParseDuration parses a Go duration ("90m", "1h30m") or whole days ("14d").
func ParseDuration(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n > maxDays || n < -maxDays {
			return 0, fmt.Errorf("%q is not a duration (e.g. 15m, 1h30m, 14d; at most %d days)", s, maxDays)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (e.g. 15m, 1h30m, 14d)", s)
	}
	return v, nil
}

func parsePositiveDuration(c *checker, file, path, s string, required bool) (time.Duration, bool) {
	if s == "" {
		if required {
			c.add(file, path, "is required: a duration such as 15m, 1h or 14d")
		}
		return 0, !required
	}
	d, err := ParseDuration(s)
	if err != nil {
		c.add(file, path, err.Error())
		return 0, false
	}
	if d <= 0 {
		c.add(file, path, fmt.Sprintf("%q must be positive", s))
		return 0, false
	}
	return d, true
}

func compilePolicies(c *checker, m *merged, b *Bundle) {
	seen := map[string]string{}
	for _, l := range m.policies {
		d := l.v
		ok := checkID(c, l.file, l.path+".id", d.ID, seen, "policy")
		p := &Policy{ID: d.ID, Description: d.Description}
		if len(d.Steps) == 0 {
			c.add(l.file, l.path+".steps", "is required: at least one step")
		}
		for i, sd := range d.Steps {
			path := fmt.Sprintf("%s.steps[%d]", l.path, i)
			p.Steps = append(p.Steps, compileStep(c, l.file, path, sd, b))
		}
		compileBreach(c, l.file, l.path, d, p, b)
		if ok {
			b.Policies[d.ID] = p
			b.PolicyOrder = append(b.PolicyOrder, d.ID)
		}
	}
}

// compileBreach compiles who is told of each clock's breach and the
// fail-safe reminder cadence.
func compileBreach(c *checker, file, path string, d policyDoc, p *Policy, b *Bundle) {
	for _, cl := range []struct {
		name    string
		kind    eventsv1.ClockKind
		targets []targetDoc
	}{{"communicate", eventsv1.ClockKind_CLOCK_KIND_COMMUNICATE, d.Breach.Communicate},
		{"acknowledge", eventsv1.ClockKind_CLOCK_KIND_ACKNOWLEDGE, d.Breach.Acknowledge},
		{"action", eventsv1.ClockKind_CLOCK_KIND_ACTION, d.Breach.Action}} {
		if len(cl.targets) == 0 {
			continue
		}
		n := BreachNotice{Clock: cl.kind}
		for j, td := range cl.targets {
			if t, ok := compileTarget(c, file, fmt.Sprintf("%s.breach.%s[%d]", path, cl.name, j), td, b); ok {
				n.Targets = append(n.Targets, t)
			}
		}
		p.Breach = append(p.Breach, n)
	}
	seen := map[eventsv1.Channel]bool{}
	for j, ch := range d.Breach.Channels {
		cp := fmt.Sprintf("%s.breach.channels[%d]", path, j)
		v, ok := parseChannel(c, file, cp, ch)
		if !ok {
			continue
		}
		if seen[v] {
			c.add(file, cp, fmt.Sprintf("channel %s is listed twice", ch))
			continue
		}
		seen[v] = true
		p.BreachChannels = append(p.BreachChannels, v)
	}
	if d.FailsafeReminder != "" {
		p.FailsafeReminder, _ = parsePositiveDuration(c, file, path+".failsafe_reminder", d.FailsafeReminder, false)
	}
}

func compileStep(c *checker, file, path string, sd stepDoc, b *Bundle) Step {
	var s Step
	if len(sd.Targets) == 0 {
		c.add(file, path+".targets", "is required: at least one target")
	}
	for j, td := range sd.Targets {
		tp := fmt.Sprintf("%s.targets[%d]", path, j)
		if t, ok := compileTarget(c, file, tp, td, b); ok {
			s.Targets = append(s.Targets, t)
		}
	}
	s.Timeout, _ = parsePositiveDuration(c, file, path+".timeout", sd.Timeout, true)
	switch {
	case sd.Repeats < 0:
		c.add(file, path+".repeats", fmt.Sprintf("%d must not be negative", sd.Repeats))
	case sd.Repeats > 20:
		c.add(file, path+".repeats", fmt.Sprintf("%d is more than 20", sd.Repeats))
	default:
		s.Repeats = uint32(sd.Repeats)
	}
	switch sd.Ack {
	case "", "any_one":
		s.AckMode = eventsv1.AckMode_ACK_MODE_ANY_ONE
	case "all_must":
		s.AckMode = eventsv1.AckMode_ACK_MODE_ALL_MUST
	default:
		c.add(file, path+".ack", fmt.Sprintf("%q is not an acknowledge mode: any_one or all_must", sd.Ack))
	}
	if len(sd.Channels) == 0 {
		c.add(file, path+".channels", "is required: channels to try, in order")
	}
	seen := map[eventsv1.Channel]bool{}
	for j, ch := range sd.Channels {
		cp := fmt.Sprintf("%s.channels[%d]", path, j)
		v, ok := parseChannel(c, file, cp, ch)
		if !ok {
			continue
		}
		if seen[v] {
			c.add(file, cp, fmt.Sprintf("channel %s is listed twice", ch))
			continue
		}
		seen[v] = true
		s.Channels = append(s.Channels, v)
	}
	return s
}

func compileTarget(c *checker, file, path string, td targetDoc, b *Bundle) (Target, bool) {
	t := Target{Ref: td.Ref, Tenant: td.Tenant}
	needRef := false
	switch td.Kind {
	case "referrer":
		t.Kind = eventsv1.TargetKind_TARGET_KIND_REFERRER
	case "referrer_team":
		t.Kind = eventsv1.TargetKind_TARGET_KIND_REFERRER_TEAM
	case "oncall":
		t.Kind = eventsv1.TargetKind_TARGET_KIND_ONCALL_ROLE
		needRef = true
		if td.Ref != "" {
			if _, ok := b.Rotas[td.Ref]; !ok {
				c.add(file, path+".ref", fmt.Sprintf("rota %q is not defined", td.Ref))
				return t, false
			}
		}
	case "person":
		t.Kind = eventsv1.TargetKind_TARGET_KIND_PERSON
		needRef = true
		if td.Ref != "" {
			if _, ok := b.People[td.Ref]; !ok {
				c.add(file, path+".ref", fmt.Sprintf("person %q is not in the directory", td.Ref))
				return t, false
			}
		}
	case "failsafe_officer":
		t.Kind = eventsv1.TargetKind_TARGET_KIND_FAILSAFE_OFFICER
	case "network_failsafe_team":
		t.Kind = eventsv1.TargetKind_TARGET_KIND_NETWORK_FAILSAFE_TEAM
	case "other_trust_role":
		t.Kind = eventsv1.TargetKind_TARGET_KIND_OTHER_TRUST_ROLE
		needRef = true
		switch {
		case td.Tenant == "":
			c.add(file, path+".tenant", "is required: the other trust's ODS code")
			return t, false
		case !odsTrust.MatchString(td.Tenant):
			c.add(file, path+".tenant", fmt.Sprintf("%q is not a trust ODS code", td.Tenant))
			return t, false
		case td.Tenant == b.Tenant:
			c.add(file, path+".tenant", "names this trust: use kind oncall for a role in this trust")
			return t, false
		}
	case "":
		c.add(file, path+".kind", "is required: referrer, referrer_team, oncall, person, failsafe_officer, network_failsafe_team or other_trust_role")
		return t, false
	default:
		c.add(file, path+".kind", fmt.Sprintf("%q is not a target kind: referrer, referrer_team, oncall, person, failsafe_officer, network_failsafe_team or other_trust_role", td.Kind))
		return t, false
	}
	if needRef && td.Ref == "" {
		c.add(file, path+".ref", fmt.Sprintf("is required for kind %s", td.Kind))
		return t, false
	}
	if !needRef && td.Ref != "" {
		c.add(file, path+".ref", fmt.Sprintf("is not used by kind %s", td.Kind))
		return t, false
	}
	if td.Tenant != "" && t.Kind != eventsv1.TargetKind_TARGET_KIND_OTHER_TRUST_ROLE {
		c.add(file, path+".tenant", fmt.Sprintf("is not used by kind %s", td.Kind))
		return t, false
	}
	return t, true
}

func compileCategories(c *checker, m *merged, b *Bundle) {
	seen := map[string]string{}
	ranks := map[int]string{}
	for _, l := range m.categories {
		d := l.v
		cat := &Category{Code: d.Code, Rank: d.Rank, Policy: d.Policy}
		ok := true
		std, isStd := StandardCategory(d.Code)
		switch {
		case d.Code == "":
			c.add(l.file, l.path+".code", "is required: CRITICAL, URGENT, SIGNIFICANT_UNEXPECTED, CANCER or a local code with local: true")
			ok = false
		case isStd && d.Local:
			c.add(l.file, l.path+".local", fmt.Sprintf("%s is a standard category, not a local one", d.Code))
			ok = false
		case !isStd && !d.Local:
			c.add(l.file, l.path+".code", fmt.Sprintf("%q is not a standard category (CRITICAL, URGENT, SIGNIFICANT_UNEXPECTED, CANCER); mark a local one with local: true", d.Code))
			ok = false
		case !isStd && !codeLocal.MatchString(d.Code):
			c.add(l.file, l.path+".code", fmt.Sprintf("%q is not a valid local code (upper-case letters, digits, '_')", d.Code))
			ok = false
		case seen[d.Code] != "":
			c.add(l.file, l.path+".code", fmt.Sprintf("category %s is already defined at %s", d.Code, seen[d.Code]))
			ok = false
		}
		if isStd {
			cat.Standard = std
		} else {
			cat.Standard = eventsv1.Category_CATEGORY_LOCAL
		}
		if d.Rank < 1 {
			c.add(l.file, l.path+".rank", "is required: a severity rank from 1 (most severe)")
		} else if prev, dup := ranks[d.Rank]; dup {
			c.add(l.file, l.path+".rank", fmt.Sprintf("rank %d is already held by %s; ranks order categories and must differ", d.Rank, prev))
		} else {
			ranks[d.Rank] = d.Code
		}
		var okc [3]bool
		cat.Communicate, okc[0] = parsePositiveDuration(c, l.file, l.path+".clocks.communicate", d.Clocks.Communicate, false)
		cat.Acknowledge, okc[1] = parsePositiveDuration(c, l.file, l.path+".clocks.acknowledge", d.Clocks.Acknowledge, false)
		cat.Action, okc[2] = parsePositiveDuration(c, l.file, l.path+".clocks.action", d.Clocks.Action, false)
		if okc[0] && okc[1] && okc[2] && cat.Communicate == 0 && cat.Acknowledge == 0 && cat.Action == 0 {
			c.add(l.file, l.path+".clocks", "is required: at least one of communicate, acknowledge, action")
		}
		switch d.Clocks.Start {
		case "", "received":
			cat.ClockStart = ClockStartReceived
		case "reported":
			cat.ClockStart = ClockStartReported
		default:
			c.add(l.file, l.path+".clocks.start", fmt.Sprintf("%q is not a clock start: use received (the default) or reported", d.Clocks.Start))
		}
		switch {
		case d.Policy == "":
			c.add(l.file, l.path+".policy", "is required: the escalation policy id for this category")
		case b.Policies[d.Policy] == nil:
			c.add(l.file, l.path+".policy", fmt.Sprintf("policy %q is not defined", d.Policy))
		}
		if ok {
			seen[d.Code] = l.file + ": " + l.path
			b.categories[d.Code] = cat
			b.Categories = append(b.Categories, cat)
		}
	}
	for _, code := range StandardCodes() {
		if _, ok := b.categories[code]; !ok {
			file := ""
			if len(m.categories) > 0 {
				file = m.categories[0].file
			}
			c.add(file, "categories", fmt.Sprintf("category %s is not defined; every bundle defines CRITICAL, URGENT, SIGNIFICANT_UNEXPECTED and CANCER", code))
		}
	}
	sort.SliceStable(b.Categories, func(i, j int) bool { return b.Categories[i].Rank < b.Categories[j].Rank })
}

func compileRules(c *checker, m *merged, b *Bundle) {
	if len(m.rules) == 0 {
		return
	}
	env, err := newRuleEnv()
	if err != nil {
		c.add(m.rules[0].file, "rules", err.Error())
		return
	}
	seen := map[string]string{}
	for _, l := range m.rules {
		d := l.v
		ok := checkID(c, l.file, l.path+".id", d.ID, seen, "rule")
		r := &Rule{ID: d.ID, When: d.When, Reason: d.Reason, Policy: d.Policy}
		if d.When == "" {
			c.add(l.file, l.path+".when", "is required: a CEL expression that yields a bool")
			ok = false
		} else if prg, err := compileRule(env, d.When); err != nil {
			c.add(l.file, l.path+".when", err.Error())
			ok = false
		} else {
			r.Program = prg
		}
		if cat, found := b.categories[d.Category]; found {
			r.Category = cat
		} else if d.Category == "" {
			c.add(l.file, l.path+".category", "is required")
			ok = false
		} else {
			c.add(l.file, l.path+".category", fmt.Sprintf("category %q is not defined", d.Category))
			ok = false
		}
		if strings.TrimSpace(d.Reason) == "" {
			c.add(l.file, l.path+".reason", "is required: the reason recorded when this rule upgrades an alert")
		}
		if d.Policy != "" && b.Policies[d.Policy] == nil {
			c.add(l.file, l.path+".policy", fmt.Sprintf("policy %q is not defined", d.Policy))
		}
		if ok {
			b.Rules = append(b.Rules, r)
		}
	}
	sort.SliceStable(b.Rules, func(i, j int) bool { return b.Rules[i].Category.Rank < b.Rules[j].Category.Rank })
}

func compileFailsafe(c *checker, m *merged, b *Bundle, anyFile string) {
	if m.failsafe == nil {
		c.add(anyFile, "failsafe", "is required: officer, queue, policy and default_category")
	} else {
		f, file, path := m.failsafe.v, m.failsafe.file, m.failsafe.path
		switch {
		case f.Officer == "":
			c.add(file, path+".officer", "is required: the person id of the fail-safe officer")
		case b.People[f.Officer] == nil:
			c.add(file, path+".officer", fmt.Sprintf("person %q is not in the directory", f.Officer))
		}
		if f.Queue == "" {
			c.add(file, path+".queue", "is required: the name of the trust's fail-safe queue")
		}
		switch {
		case f.Policy == "":
			c.add(file, path+".policy", "is required: the policy for quarantined alerts")
		case b.Policies[f.Policy] == nil:
			c.add(file, path+".policy", fmt.Sprintf("policy %q is not defined", f.Policy))
		}
		switch {
		case f.DefaultCategory == "":
			c.add(file, path+".default_category", "is required: the category of an alert nobody classified")
		case b.categories[f.DefaultCategory] == nil:
			c.add(file, path+".default_category", fmt.Sprintf("category %q is not defined", f.DefaultCategory))
		}
		b.Failsafe = Failsafe(f)
	}
	if m.network != nil {
		n, file, path := m.network.v, m.network.file, m.network.path
		switch {
		case n.FailsafeTeam == "":
			c.add(file, path+".failsafe_team", "is required: the team id of the network fail-safe team")
		case n.Tenant == "" && b.Teams[n.FailsafeTeam] == nil:
			c.add(file, path+".failsafe_team", fmt.Sprintf("team %q is not defined", n.FailsafeTeam))
		}
		if n.Tenant != "" && !odsTrust.MatchString(n.Tenant) {
			c.add(file, path+".tenant", fmt.Sprintf("%q is not a trust ODS code", n.Tenant))
		}
		b.NetworkFailsafe = TeamRef{Tenant: n.Tenant, Team: n.FailsafeTeam}
		return
	}
	for _, p := range b.Policies {
		for _, s := range p.Steps {
			for _, t := range s.Targets {
				if t.Kind == eventsv1.TargetKind_TARGET_KIND_NETWORK_FAILSAFE_TEAM {
					c.add(anyFile, "network", fmt.Sprintf("is required: policy %s targets the network fail-safe team", p.ID))
					return
				}
			}
		}
	}
}
