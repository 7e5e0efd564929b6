package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"

	"github.com/herald-health/herald/platform/eventlog"
	auditv1 "github.com/herald-health/herald/proto/gen/herald/audit/v1"
)

// HashSize is the size of a record's hash (SHA-256).
const HashSize = sha256.Size

// Genesis is the prev hash of a chain's first record.
var Genesis = make([]byte, HashSize)

// canonicalTag starts every canonical encoding, so a change of the layout
// is a new tag, never a silent change of meaning.
const canonicalTag = "herald.audit.v1/record"

// Canonical is the byte string a record's hash is taken over: a tag, then
// fields 1-13 of AuditRecord in field order, each string and bytes field as
// its length (uvarint) and bytes, the sequence as 8 bytes big-endian and
// occurred_at as seconds and nanoseconds (8 and 4 bytes big-endian).
// Protobuf's own encoding is not canonical across versions and languages,
// so the hash is not taken over it.
func Canonical(r *auditv1.AuditRecord) []byte {
	var b bytes.Buffer
	str := func(s string) {
		b.Write(binary.AppendUvarint(nil, uint64(len(s))))
		b.WriteString(s)
	}
	str(canonicalTag)
	b.Write(binary.BigEndian.AppendUint64(nil, r.GetSequence()))
	str(r.GetTrust())
	str(r.GetAlertId())
	str(r.GetEventId())
	str(r.GetEventType())
	a := r.GetActor()
	for _, s := range []string{a.GetPersonId(), a.GetRole(), a.GetIdentityProvider(), a.GetIssuer(), a.GetSubject(), a.GetAcr(), a.GetRelayingService()} {
		str(s)
	}
	at := r.GetOccurredAt()
	b.Write(binary.BigEndian.AppendUint64(nil, uint64(at.GetSeconds())))
	b.Write(binary.BigEndian.AppendUint32(nil, uint32(at.GetNanos())))
	str(r.GetPolicyId())
	str(r.GetPolicyVersion())
	str(r.GetPolicyContentHash())
	str(r.GetProducer())
	str(r.GetDetail())
	str(string(r.GetPrevHash()))
	return b.Bytes()
}

// Hash is the SHA-256 of the record's canonical encoding.
func Hash(r *auditv1.AuditRecord) []byte {
	sum := sha256.Sum256(Canonical(r))
	return sum[:]
}

// Seal makes entry the record after (sequence, prev) of its trust: it sets
// the sequence, the prev hash and the hash. entry is modified.
func Seal(entry *auditv1.AuditRecord, sequence uint64, prev []byte) *auditv1.AuditRecord {
	entry.Sequence = sequence
	entry.PrevHash = append([]byte(nil), prev...)
	entry.Hash = Hash(entry)
	return entry
}

// Intact reports whether the record's hash is the hash of its content.
func Intact(r *auditv1.AuditRecord) bool {
	return bytes.Equal(r.GetHash(), Hash(r))
}

// RecordID is the deterministic id of the record of an event in a trust's
// chain: the same event is chained once, whoever chains it and however
// often it is delivered.
func RecordID(trust, eventID string) string { return eventlog.ID("audit", trust, eventID) }

// AnchorID is the deterministic id of the anchor of a chain's head.
func AnchorID(trust string, sequence uint64, head []byte) string {
	return eventlog.ID("audit-anchor", trust, string(binary.BigEndian.AppendUint64(nil, sequence)), string(head))
}
