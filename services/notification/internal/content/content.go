// Package content renders the text of a notification from templates, one
// per channel and category (text/template, embedded), overridable per trust
// from a directory laid out as <dir>/<TENANT>/<channel>/<name>.tmpl.
//
// What a message may say is fixed by Data: an opaque alert reference, the
// category, the trust, the deadline and the acknowledge link. Data has no
// field for patient data (NHS number, name, date of birth, report text), so
// no template, embedded or overriding, can print it.
package content

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"text/template"
	"time"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/notification/internal/domain"
)

//go:embed templates
var embedded embed.FS

// Data is everything a template may print.
type Data struct {
	// AlertID is the alert id; templates print Ref, the alert's reference.
	AlertID string
	// Reference is the alert's keyed reference (platform/alertref), the
	// one people see everywhere.
	Reference string
	// Category is the category's display name, e.g. "Critical".
	Category string
	// CategoryKey selects the template: critical, urgent,
	// significant_unexpected, cancer, local.
	CategoryKey string
	// Trust is the tenant's ODS code.
	Trust    string
	Deadline time.Time
	// AckLink is <ack-base-url>/ack/<token>.
	AckLink string
	Step    uint32
	Repeat  uint32
	// Failsafe marks the message to the fail-safe team; Queue names the queue.
	Failsafe bool
	Queue    string
	// Quarantined marks an alert whose report arrived with a data-quality
	// problem; Missing says what, in fixed words (QuarantineGap), never the
	// report's own text.
	Quarantined bool
	Missing     []string
	// Test marks a TestContactPoint message.
	Test bool
	// Breach names the clock (communicate, acknowledge, action) whose
	// breach this notice tells of (template "breach").
	Breach string
	// Digest lists the messages a person's rate limit held back, merged
	// into this one message (template "digest"): one line each.
	Digest []Data
}

// FromAlert returns the data of a message for step and repeat of alert a,
// whose reference is ref. Only the fields listed in Data are copied from
// the projection.
func FromAlert(a domain.Alert, ref string, step, repeat uint32, failsafe bool, ackLink string) Data {
	name, key := Category(a.Category, a.LocalCategory)
	d := Data{
		AlertID: a.ID, Reference: ref, Category: name, CategoryKey: key, Trust: a.Tenant, Deadline: a.Deadline,
		AckLink: ackLink, Step: step, Repeat: repeat, Failsafe: failsafe, Queue: a.FailsafeQueue,
		Quarantined: len(a.Quarantine) > 0,
	}
	for _, c := range a.Quarantine {
		d.Missing = append(d.Missing, QuarantineGap(c))
	}
	return d
}

// QuarantineGap says in words what a quarantined report lacked. The words
// are fixed per code, so a message can say what is missing without any
// data from the report.
func QuarantineGap(c eventsv1.ProblemCode) string {
	switch c {
	case eventsv1.ProblemCode_PROBLEM_CODE_NHS_NUMBER_MISSING:
		return "no NHS number"
	case eventsv1.ProblemCode_PROBLEM_CODE_NHS_NUMBER_INVALID:
		return "the NHS number fails its check digit"
	case eventsv1.ProblemCode_PROBLEM_CODE_ACCESSION_MISSING:
		return "no accession number"
	case eventsv1.ProblemCode_PROBLEM_CODE_REFERRER_MISSING:
		return "no referrer named"
	case eventsv1.ProblemCode_PROBLEM_CODE_REPORT_TIME_INVALID:
		return "the report time is unreadable"
	case eventsv1.ProblemCode_PROBLEM_CODE_BIRTH_DATE_INVALID:
		return "the date of birth is unreadable"
	}
	return "a data-quality problem (see the alert)"
}

// Ref is the reference printed in messages: the alert's keyed reference
// (HRD-XXXX-XXXX-XXXX), the same on the acknowledge page and in heraldctl.
func (d Data) Ref() string { return d.Reference }

// Count is how many alerts a digest lists.
func (d Data) Count() int { return len(d.Digest) }

// StepNumber is the one-based step number, for people.
func (d Data) StepNumber() uint32 { return d.Step + 1 }

// HasDeadline says whether the alert has a deadline.
func (d Data) HasDeadline() bool { return !d.Deadline.IsZero() }

// DeadlineText is the deadline in UTC, e.g. "2026-11-29 16:15 UTC".
func (d Data) DeadlineText() string { return d.Deadline.UTC().Format("2006-01-02 15:04 UTC") }

// Category returns the display name and template key of a category.
func Category(c eventsv1.Category, local string) (name, key string) {
	switch c {
	case eventsv1.Category_CATEGORY_CRITICAL:
		return "Critical", "critical"
	case eventsv1.Category_CATEGORY_URGENT:
		return "Urgent", "urgent"
	case eventsv1.Category_CATEGORY_SIGNIFICANT_UNEXPECTED:
		return "Significant unexpected", "significant_unexpected"
	case eventsv1.Category_CATEGORY_CANCER:
		return "Cancer", "cancer"
	case eventsv1.Category_CATEGORY_LOCAL:
		if local != "" {
			return local, "local"
		}
		return "Local", "local"
	}
	return "Alert", "default"
}

// Message is a rendered message: Subject is empty for channels without one.
type Message struct {
	Subject string
	Body    string
}

// Renderer renders messages. It is safe for concurrent use; parsed
// templates are cached (a changed override directory needs a restart).
type Renderer struct {
	overrides fs.FS
	mu        sync.Mutex
	cache     map[string]*template.Template
}

// NewRenderer returns a renderer with the embedded templates, overridden per
// trust by the templates in overrides (nil for none).
func NewRenderer(overrides fs.FS) *Renderer {
	return &Renderer{overrides: overrides, cache: map[string]*template.Template{}}
}

// ChannelKey is the template directory of a channel.
func ChannelKey(c eventsv1.Channel) string {
	switch c {
	case eventsv1.Channel_CHANNEL_EMAIL:
		return "email"
	case eventsv1.Channel_CHANNEL_SMS:
		return "sms"
	case eventsv1.Channel_CHANNEL_TEAMS:
		return "teams"
	case eventsv1.Channel_CHANNEL_WEBHOOK:
		return "webhook"
	}
	return "log"
}

// Names returns the template names tried for d, most specific first.
func Names(d Data) []string {
	switch {
	case d.Test:
		return []string{"test", "default"}
	case len(d.Digest) > 0:
		return []string{"digest"}
	case d.Breach != "":
		return []string{"breach"}
	case d.Failsafe:
		return []string{"failsafe", d.CategoryKey, "default"}
	case d.Quarantined:
		return []string{"quarantine", d.CategoryKey, "default"}
	}
	return []string{d.CategoryKey, "default"}
}

// Render renders the message for channel c and data d: the trust's
// override of the most specific template name if there is one, else the
// embedded one; for each name, the trust's directory first.
func (r *Renderer) Render(c eventsv1.Channel, d Data) (Message, error) {
	t, err := r.lookup(d.Trust, ChannelKey(c), Names(d))
	if err != nil {
		return Message{}, err
	}
	var m Message
	if t.Lookup("subject") != nil {
		var b bytes.Buffer
		if err := t.ExecuteTemplate(&b, "subject", d); err != nil {
			return Message{}, fmt.Errorf("render %s subject: %w", t.Name(), err)
		}
		m.Subject = strings.TrimSpace(b.String())
	}
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, "body", d); err != nil {
		return Message{}, fmt.Errorf("render %s body: %w", t.Name(), err)
	}
	m.Body = strings.TrimSpace(b.String()) + "\n"
	return m, nil
}

func (r *Renderer) lookup(tenant, channel string, names []string) (*template.Template, error) {
	for _, name := range names {
		if r.overrides != nil && validTenant(tenant) {
			if t, err := r.parse(r.overrides, tenant+"/"+channel+"/"+name+".tmpl"); err == nil {
				return t, nil
			} else if !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
		}
		if t, err := r.parse(embedded, "templates/"+channel+"/"+name+".tmpl"); err == nil {
			return t, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("no template for channel %s among %v", channel, names)
}

// validTenant keeps a tenant from naming a path outside its directory.
func validTenant(t string) bool {
	return t != "" && !strings.ContainsAny(t, "/\\.") && fs.ValidPath(t)
}

func (r *Renderer) parse(fsys fs.FS, path string) (*template.Template, error) {
	key := "override:" + path
	if fsys == fs.FS(embedded) {
		key = "embedded:" + path
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.cache[key]; ok {
		if t == nil {
			return nil, fs.ErrNotExist
		}
		return t, nil
	}
	b, err := fs.ReadFile(fsys, path)
	if errors.Is(err, fs.ErrNotExist) {
		r.cache[key] = nil
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("read template %s: %w", path, err)
	}
	t, err := template.New(path).Option("missingkey=error").Parse(string(b))
	if err != nil {
		return nil, fmt.Errorf("parse template %s: %w", path, err)
	}
	if t.Lookup("body") == nil {
		return nil, fmt.Errorf("template %s defines no \"body\"", path)
	}
	r.cache[key] = t
	return t, nil
}

// EmbeddedNames lists the embedded templates as channel/name pairs, for
// tests that render every template.
func EmbeddedNames() ([][2]string, error) {
	var out [][2]string
	err := fs.WalkDir(embedded, "templates", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		parts := strings.Split(strings.TrimSuffix(path, ".tmpl"), "/")
		if len(parts) == 3 {
			out = append(out, [2]string{parts[1], parts[2]})
		}
		return nil
	})
	return out, err
}
