package hl7

import (
	"strings"
	"time"
)

// AckCode is MSA-1: the outcome of a message in original acknowledgement mode.
type AckCode string

// Acknowledgement codes (HL7 table 0008).
const (
	// AckAccept (AA): the message is durably recorded.
	AckAccept AckCode = "AA"
	// AckError (AE): the message has an error the sender must correct.
	AckError AckCode = "AE"
	// AckReject (AR): the message was not processed; the sender should retry later.
	AckReject AckCode = "AR"
)

// AckProblem is the problem an AE or AR acknowledgement reports in its ERR
// segment: the field location (e.g. "PID-3") and what is wrong.
type AckProblem struct {
	// Field is the location, e.g. "PID-3" or "MSH-10"; empty if it is not
	// about one field.
	Field   string
	Problem string
	// Code is the HL7 table 0357 error code (e.g. 101 required field
	// missing, 102 data type error, 200 unsupported message type, 207
	// application internal error).
	Code string
	// Warning marks a problem that did not stop the message (ERR-4 W), such
	// as the gaps of a quarantined report; otherwise ERR-4 is E.
	Warning bool
}

// Ack describes the acknowledgement to build for a received message.
type Ack struct {
	Code AckCode
	// Text goes into MSA-3.
	Text     string
	Problems []AckProblem
	// ControlID is the MSH-10 of the ACK itself.
	ControlID string
	Time      time.Time
}

// Header is what an acknowledgement echoes from the message it answers.
type Header struct {
	Delims            Delimiters
	SendingApp        string
	SendingFacility   string
	ReceivingApp      string
	ReceivingFacility string
	TriggerEvent      string
	ControlID         string
	ProcessingID      string
	Version           string
}

// HeaderOf extracts the fields an ACK echoes from a parsed message.
func HeaderOf(m *Message) Header {
	msh := m.MSH()
	return Header{
		Delims:            m.Delims,
		SendingApp:        msh.Raw3(3),
		SendingFacility:   msh.Raw3(4),
		ReceivingApp:      msh.Raw3(5),
		ReceivingFacility: msh.Raw3(6),
		TriggerEvent:      msh.Get(9, 1, 2, 1),
		ControlID:         msh.Field(10),
		ProcessingID:      msh.Field(11),
		Version:           msh.Field(12),
	}
}

// SniffHeader reads what an ACK needs from the first segment of data without
// parsing the message, for a message that failed to parse or was too large.
// It uses the delimiters of data if they look declared, else the defaults.
func SniffHeader(data []byte) Header {
	data = []byte(strings.TrimLeft(string(data), "\r\n\t "))
	if m, err := Parse(firstSegment(data)); err == nil {
		return HeaderOf(m)
	}
	return Header{Delims: DefaultDelimiters()}
}

func firstSegment(data []byte) []byte {
	for i, c := range data {
		if c == '\r' || c == '\n' {
			return data[:i]
		}
	}
	return data
}

// Raw3 returns field n undecoded as a string (used to echo hierarchic
// designators such as MSH-4 exactly as the sender wrote them).
func (s Segment) Raw3(n int) string { return string(s.Rep(n, 1).raw) }

// BuildAck renders an ACK answering h. Sender and receiver are swapped; MSA-2
// echoes MSH-10. Every value is escaped so it cannot break the structure.
// Segments end with CR.
func BuildAck(h Header, a Ack) []byte {
	d := h.Delims
	if d.Field == 0 {
		d = DefaultDelimiters()
	}
	f := string([]byte{d.Field})
	esc := func(s string) string { return Escape(s, d) }
	version := h.Version
	if version == "" {
		version = "2.4"
	}
	processing := h.ProcessingID
	if processing == "" {
		processing = "P"
	}
	msgType := "ACK"
	if h.TriggerEvent != "" {
		msgType += string([]byte{d.Component}) + esc(h.TriggerEvent) + string([]byte{d.Component}) + "ACK"
	}
	var b strings.Builder
	b.WriteString("MSH" + f + d.EncodingCharacters() + f)
	// Hierarchic designators (MSH-3..6) are echoed raw: they came from a
	// message with the same delimiters, and sanitised of CR/LF below.
	b.WriteString(clean(h.ReceivingApp, d) + f + clean(h.ReceivingFacility, d) + f)
	b.WriteString(clean(h.SendingApp, d) + f + clean(h.SendingFacility, d) + f)
	b.WriteString(a.Time.UTC().Format("20060102150405") + f + f + msgType + f)
	b.WriteString(esc(a.ControlID) + f + esc(processing) + f + esc(version) + "\r")
	b.WriteString("MSA" + f + string(a.Code) + f + esc(h.ControlID))
	if a.Text != "" {
		b.WriteString(f + esc(truncateString(a.Text, 80)))
	}
	b.WriteString("\r")
	for _, p := range a.Problems {
		b.WriteString(errSegment(p, d))
	}
	return []byte(b.String())
}

// errSegment renders an ERR segment usable by v2.3 receivers (ERR-1 error
// code and location) and v2.5 receivers (ERR-2 location, ERR-3 HL7 error
// code, ERR-4 severity, ERR-8 user message).
func errSegment(p AckProblem, d Delimiters) string {
	f, c, s := string([]byte{d.Field}), string([]byte{d.Component}), string([]byte{d.Subcomponent})
	esc := func(v string) string { return Escape(v, d) }
	seg, field := splitLocation(p.Field)
	errCode := p.Code
	if errCode == "" {
		errCode = "207"
	}
	text := errCodeText(errCode)
	// ERR-1 (v2.3-2.4, ELD): segment^sequence^field^code&text&table
	err1 := esc(seg) + c + c + esc(field) + c + esc(errCode) + s + esc(text) + s + "HL70357"
	err2 := esc(seg) + c + c + esc(field)
	err3 := esc(errCode) + c + esc(text) + c + "HL70357"
	severity := "E"
	if p.Warning {
		severity = "W"
	}
	return "ERR" + f + err1 + f + err2 + f + err3 + f + severity + f + f + f + f + esc(p.Problem) + "\r"
}

func splitLocation(loc string) (seg, field string) {
	seg, field, _ = strings.Cut(loc, "-")
	return seg, field
}

func errCodeText(code string) string {
	switch code {
	case "100":
		return "Segment sequence error"
	case "101":
		return "Required field missing"
	case "102":
		return "Data type error"
	case "103":
		return "Table value not found"
	case "200":
		return "Unsupported message type"
	case "201":
		return "Unsupported event code"
	case "203":
		return "Unsupported version id"
	case "206":
		return "Application record locked"
	default:
		return "Application internal error"
	}
}

func clean(s string, d Delimiters) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != '\r' && c != '\n' && c != d.Field {
			b = append(b, c)
		}
	}
	return string(b)
}

func truncateString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
