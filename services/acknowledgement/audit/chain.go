package audit

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"

	auditv1 "github.com/herald-health/herald/proto/gen/herald/audit/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// Chain is the head of one trust's chain as the auditor follows it: the
// last record's sequence and hash, and the events already chained.
type Chain struct {
	Trust    string
	Sequence uint64
	Head     []byte
	events   map[string]struct{}
}

// NewChain returns an empty chain of trust.
func NewChain(trust string) *Chain {
	return &Chain{Trust: trust, Head: Genesis, events: map[string]struct{}{}}
}

// Chained reports whether the event already has a record in the chain.
func (c *Chain) Chained(eventID string) bool {
	_, ok := c.events[eventID]
	return ok
}

// Next returns the record of entry after the head (entry is not modified).
func (c *Chain) Next(entry *auditv1.AuditRecord) *auditv1.AuditRecord {
	rec := cloneRecord(entry)
	rec.Trust = c.Trust
	return Seal(rec, c.Sequence+1, c.Head)
}

// Follow moves the head to rec when rec is the next record (its sequence
// follows the head's and its prev hash is the head's). It returns false,
// and changes nothing, for a record already followed (a duplicate append)
// or one that does not follow (which Verify reports).
func (c *Chain) Follow(rec *auditv1.AuditRecord) bool {
	if rec.GetSequence() != c.Sequence+1 || !bytes.Equal(rec.GetPrevHash(), c.Head) || !Intact(rec) {
		return false
	}
	c.Sequence, c.Head = rec.GetSequence(), rec.GetHash()
	c.events[rec.GetEventId()] = struct{}{}
	return true
}

func cloneRecord(r *auditv1.AuditRecord) *auditv1.AuditRecord {
	return &auditv1.AuditRecord{
		Trust: r.GetTrust(), AlertId: r.GetAlertId(), EventId: r.GetEventId(), EventType: r.GetEventType(), Actor: r.GetActor(),
		OccurredAt: r.GetOccurredAt(), PolicyId: r.GetPolicyId(), PolicyVersion: r.GetPolicyVersion(),
		PolicyContentHash: r.GetPolicyContentHash(), Producer: r.GetProducer(), Detail: r.GetDetail(),
	}
}

// Kind is the kind of fault Verify finds.
type Kind string

// The faults Verify names.
const (
	// Modified: a record's hash is not the hash of its content, or the next
	// record does not carry its hash, or an anchor holds another hash.
	Modified Kind = "modified"
	// Removed: a sequence number is missing.
	Removed Kind = "removed"
	// Inserted: two different records claim one sequence number.
	Inserted Kind = "inserted"
	// Reordered: a record comes after one with a higher sequence number.
	Reordered Kind = "reordered"
	// Truncated: the chain ends before an anchor's sequence number.
	Truncated Kind = "truncated"
	// Forged: a record or anchor not signed by acknowledgement (unsigned,
	// an unknown key, a bad signature): left out of the chain, which is
	// verified without it (ReadTrail with a key set).
	Forged Kind = "forged"
)

// Problem is one fault in a trust's chain.
type Problem struct {
	Trust    string
	Sequence uint64
	Kind     Kind
	// Where names the record's place in the stream (partition/offset).
	Where  string
	Detail string
}

func (p Problem) String() string {
	s := fmt.Sprintf("trust %s sequence %d: %s: %s", p.Trust, p.Sequence, p.Kind, p.Detail)
	if p.Where != "" {
		s += " (at " + p.Where + ")"
	}
	return s
}

// TrustReport is what Verify found for one trust.
type TrustReport struct {
	Trust string
	// Records is how many distinct records the chain holds; Duplicates how
	// many exact repeats were read (a redelivered append: harmless).
	Records    int
	Duplicates int
	// Head is the highest sequence and its hash.
	Head     uint64
	HeadHash []byte
	// Anchors checked, and the highest anchored sequence.
	Anchors  int
	Anchored uint64
}

// Report is the outcome of a verification.
type Report struct {
	Trusts   []TrustReport
	Problems []Problem
}

// OK reports whether no problem was found.
func (r Report) OK() bool { return len(r.Problems) == 0 }

// Verifier recomputes chains from records read in stream order (each
// trust's records are in one partition, so in the order they were appended)
// and checks them against anchors.
type Verifier struct {
	trusts  map[string]*verified
	anchors map[string][]*eventsv1.AuditAnchored
	// Only, when set, limits verification to one trust.
	Only string
}

type seen struct {
	rec   *auditv1.AuditRecord
	where string
}

type verified struct {
	bySeq      map[uint64]seen
	events     map[string]uint64
	max        uint64
	duplicates int
	problems   []Problem
}

// NewVerifier returns an empty verifier.
func NewVerifier() *Verifier {
	return &Verifier{trusts: map[string]*verified{}, anchors: map[string][]*eventsv1.AuditAnchored{}}
}

// Record takes the next record of the stream; where names its position.
func (v *Verifier) Record(rec *auditv1.AuditRecord, where string) {
	trust := rec.GetTrust()
	if v.Only != "" && trust != v.Only {
		return
	}
	t := v.trusts[trust]
	if t == nil {
		t = &verified{bySeq: map[uint64]seen{}, events: map[string]uint64{}}
		v.trusts[trust] = t
	}
	seq := rec.GetSequence()
	bad := func(k Kind, format string, a ...any) {
		t.problems = append(t.problems, Problem{Trust: trust, Sequence: seq, Kind: k, Where: where, Detail: fmt.Sprintf(format, a...)})
	}
	if seq == 0 {
		bad(Inserted, "a record without a sequence number (event %s)", rec.GetEventId())
		return
	}
	if !Intact(rec) {
		bad(Modified, "its hash is not the hash of its content (event %s)", rec.GetEventId())
	}
	if prior, ok := t.bySeq[seq]; ok {
		if bytes.Equal(prior.rec.GetHash(), rec.GetHash()) && Intact(rec) {
			t.duplicates++
			return
		}
		bad(Inserted, "a second, different record claims this sequence (event %s; the first, event %s, is at %s)",
			rec.GetEventId(), prior.rec.GetEventId(), prior.where)
		return
	}
	if first, ok := t.events[rec.GetEventId()]; ok {
		bad(Inserted, "event %s is recorded a second time (first at sequence %d)", rec.GetEventId(), first)
	} else {
		t.events[rec.GetEventId()] = seq
	}
	if seq < t.max {
		bad(Reordered, "comes after sequence %d in the stream", t.max)
	}
	t.bySeq[seq] = seen{rec: rec, where: where}
	t.max = max(t.max, seq)
}

// Anchor takes an anchor of a chain's head.
func (v *Verifier) Anchor(a *eventsv1.AuditAnchored) {
	if v.Only != "" && a.GetTrust() != v.Only {
		return
	}
	v.anchors[a.GetTrust()] = append(v.anchors[a.GetTrust()], a)
}

// Finish walks every chain from sequence 1 to its head, checks each link
// and each anchor, and returns the report.
func (v *Verifier) Finish() Report {
	var rep Report
	trusts := slices.Sorted(maps.Keys(v.trusts))
	for trust := range v.anchors {
		if _, ok := v.trusts[trust]; !ok {
			trusts = append(trusts, trust)
			v.trusts[trust] = &verified{bySeq: map[uint64]seen{}, events: map[string]uint64{}}
		}
	}
	slices.Sort(trusts)
	for _, trust := range trusts {
		t := v.trusts[trust]
		tr := TrustReport{Trust: trust, Records: len(t.bySeq), Duplicates: t.duplicates, Head: t.max}
		problems := t.problems
		var prev *auditv1.AuditRecord
		for seq := uint64(1); seq <= t.max; seq++ {
			s, ok := t.bySeq[seq]
			if !ok {
				problems = append(problems, Problem{Trust: trust, Sequence: seq, Kind: Removed, Detail: "no record holds this sequence"})
				prev = nil
				continue
			}
			switch {
			case seq == 1 && !bytes.Equal(s.rec.GetPrevHash(), Genesis):
				problems = append(problems, Problem{Trust: trust, Sequence: seq, Kind: Inserted, Where: s.where,
					Detail: "the first record does not start from the genesis hash"})
			case prev != nil && !bytes.Equal(s.rec.GetPrevHash(), prev.GetHash()):
				problems = append(problems, Problem{Trust: trust, Sequence: seq - 1, Kind: Modified, Where: t.bySeq[seq-1].where,
					Detail: fmt.Sprintf("record %d does not carry its hash: record %d was modified or replaced", seq, seq-1)})
			}
			prev = s.rec
		}
		if s, ok := t.bySeq[t.max]; ok {
			tr.HeadHash = s.rec.GetHash()
		}
		for _, a := range v.anchors[trust] {
			tr.Anchors++
			tr.Anchored = max(tr.Anchored, a.GetSequence())
			s, ok := t.bySeq[a.GetSequence()]
			switch {
			case a.GetSequence() > t.max:
				problems = append(problems, Problem{Trust: trust, Sequence: a.GetSequence(), Kind: Truncated,
					Detail: fmt.Sprintf("an anchor covers sequence %d but the chain ends at %d", a.GetSequence(), t.max)})
			case ok && !bytes.Equal(s.rec.GetHash(), a.GetHeadHash()):
				problems = append(problems, Problem{Trust: trust, Sequence: a.GetSequence(), Kind: Modified, Where: s.where,
					Detail: fmt.Sprintf("the anchor holds hash %s, the record %s", short(a.GetHeadHash()), short(s.rec.GetHash()))})
			}
		}
		rep.Trusts = append(rep.Trusts, tr)
		rep.Problems = append(rep.Problems, problems...)
	}
	return rep
}

func short(b []byte) string {
	s := hex.EncodeToString(b)
	if len(s) > 16 {
		s = s[:16]
	}
	return s
}
