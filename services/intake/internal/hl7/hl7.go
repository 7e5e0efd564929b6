// Package hl7 parses HL7 v2 messages (versions 2.3 to 2.5.1) and builds
// acknowledgements. It honours the delimiters each message declares in MSH-1
// and MSH-2, splits fields into repetitions, components and subcomponents on
// demand, and decodes escape sequences (\F\ \S\ \T\ \R\ \E\ \Xhh..\ and the
// formatting escapes) when a value is read.
//
// Parsing keeps the message bytes and records only where segments and fields
// start, so a parse costs a few allocations whatever the message size. Values
// are decoded when asked for. The parser never panics on any input; callers
// bound the input size (the MLLP framer does).
package hl7

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// ErrMalformed is wrapped by every parse error.
var ErrMalformed = errors.New("malformed HL7 message")

// Limits that keep a hostile message from costing more than its size.
const (
	// MaxSegments is the most segments a message may have.
	MaxSegments = 10000
	// MaxFields is the most fields one segment may have.
	MaxFields = 1000
)

// Delimiters are the separators a message declares in MSH-1 and MSH-2.
type Delimiters struct {
	Field        byte
	Component    byte
	Repetition   byte
	Escape       byte
	Subcomponent byte
}

// DefaultDelimiters are the usual |^~\& delimiters.
func DefaultDelimiters() Delimiters {
	return Delimiters{Field: '|', Component: '^', Repetition: '~', Escape: '\\', Subcomponent: '&'}
}

// EncodingCharacters returns MSH-2 for these delimiters.
func (d Delimiters) EncodingCharacters() string {
	return string([]byte{d.Component, d.Repetition, d.Escape, d.Subcomponent})
}

// Message is a parsed HL7 v2 message. Its values are views into the bytes
// given to Parse, which must not change while the Message is used.
type Message struct {
	Delims   Delimiters
	Segments []Segment
}

// Segment is one segment: its id and its fields, still encoded.
type Segment struct {
	ID string
	// fields[0] is the segment id. For MSH, fields[1] is MSH-1 (the field
	// separator) and fields[2] is MSH-2 (the encoding characters), so field n
	// is fields[n] for every segment.
	fields [][]byte
	d      Delimiters
}

// Parse parses one HL7 v2 message. Segments are separated by CR; LF and CRLF
// are tolerated. The message must start with an MSH segment.
func Parse(data []byte) (*Message, error) {
	data = bytes.TrimLeft(data, "\r\n\t ")
	if len(data) < 8 || string(data[:3]) != "MSH" {
		return nil, fmt.Errorf("%w: does not start with an MSH segment", ErrMalformed)
	}
	d, err := declaredDelimiters(data)
	if err != nil {
		return nil, err
	}
	m := &Message{Delims: d, Segments: make([]Segment, 0, 1+bytes.Count(data, []byte{'\r'}))}
	for len(data) > 0 {
		i := bytes.IndexAny(data, "\r\n")
		var line []byte
		if i < 0 {
			line, data = data, nil
		} else {
			line, data = data[:i], data[i+1:]
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if len(m.Segments) >= MaxSegments {
			return nil, fmt.Errorf("%w: more than %d segments", ErrMalformed, MaxSegments)
		}
		seg, err := parseSegment(line, d, len(m.Segments) == 0)
		if err != nil {
			return nil, err
		}
		m.Segments = append(m.Segments, seg)
	}
	return m, nil
}

func declaredDelimiters(data []byte) (Delimiters, error) {
	d := Delimiters{Field: data[3]}
	end := bytes.IndexByte(data[4:], d.Field)
	if end < 0 {
		return d, fmt.Errorf("%w: MSH-2 encoding characters are not terminated", ErrMalformed)
	}
	enc := data[4 : 4+end]
	if len(enc) < 2 || len(enc) > 5 {
		return d, fmt.Errorf("%w: MSH-2 must declare 2 to 5 encoding characters, got %d", ErrMalformed, len(enc))
	}
	// v2.3-2.5.1 declare four characters; a shortened MSH-2 keeps the
	// defaults for the missing ones only if they do not clash.
	def := DefaultDelimiters()
	d.Component, d.Repetition = enc[0], enc[1]
	d.Escape, d.Subcomponent = def.Escape, def.Subcomponent
	if len(enc) >= 3 {
		d.Escape = enc[2]
	}
	if len(enc) >= 4 {
		d.Subcomponent = enc[3]
	}
	all := []byte{d.Field, d.Component, d.Repetition, d.Escape, d.Subcomponent}
	for i, c := range all {
		// HL7 delimiters are printable ASCII punctuation.
		if c <= ' ' || c > '~' || isAlnum(c) {
			return d, fmt.Errorf("%w: MSH-1/MSH-2 declare an unusable delimiter %q", ErrMalformed, c)
		}
		for _, o := range all[i+1:] {
			if c == o {
				return d, fmt.Errorf("%w: MSH-1/MSH-2 declare delimiter %q twice", ErrMalformed, c)
			}
		}
	}
	return d, nil
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
}

func parseSegment(line []byte, d Delimiters, first bool) (Segment, error) {
	n := 1 + bytes.Count(line, []byte{d.Field})
	if n > MaxFields {
		return Segment{}, fmt.Errorf("%w: segment has more than %d fields", ErrMalformed, MaxFields)
	}
	id := line
	if i := bytes.IndexByte(line, d.Field); i >= 0 {
		id = line[:i]
	}
	if len(id) != 3 || !isAlnum(id[0]) || !isAlnum(id[1]) || !isAlnum(id[2]) {
		return Segment{}, fmt.Errorf("%w: invalid segment id %q", ErrMalformed, truncate(id, 8))
	}
	// MSH (and the batch headers) count the field separator itself as
	// field 1; a header too short to hold it is parsed like any segment.
	isMSH := (string(id) == "MSH" || string(id) == "BHS" || string(id) == "FHS") && len(line) >= 4 && line[3] == d.Field
	if first && string(id) != "MSH" {
		return Segment{}, fmt.Errorf("%w: first segment is %s, not MSH", ErrMalformed, id)
	}
	fields := make([][]byte, 0, n+1)
	if isMSH {
		// MSH-1 is the field separator itself; MSH-2 runs to the next one.
		fields = append(fields, line[:3], line[3:4])
		rest := line[4:]
		for {
			i := bytes.IndexByte(rest, d.Field)
			if i < 0 {
				fields = append(fields, rest)
				break
			}
			fields = append(fields, rest[:i])
			rest = rest[i+1:]
		}
	} else {
		rest := line
		for {
			i := bytes.IndexByte(rest, d.Field)
			if i < 0 {
				fields = append(fields, rest)
				break
			}
			fields = append(fields, rest[:i])
			rest = rest[i+1:]
		}
	}
	return Segment{ID: segmentID(id), fields: fields, d: d}, nil
}

// segmentID returns the id as a string without allocating for the usual
// segments of a result message.
func segmentID(id []byte) string {
	switch string(id) {
	case "MSH":
		return "MSH"
	case "PID":
		return "PID"
	case "PV1":
		return "PV1"
	case "ORC":
		return "ORC"
	case "OBR":
		return "OBR"
	case "OBX":
		return "OBX"
	case "NTE":
		return "NTE"
	case "MSA":
		return "MSA"
	case "ERR":
		return "ERR"
	}
	return string(id)
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// Segment returns the first segment with the given id.
func (m *Message) Segment(id string) (Segment, bool) {
	for _, s := range m.Segments {
		if s.ID == id {
			return s, true
		}
	}
	return Segment{}, false
}

// All returns every segment with the given id, in order.
func (m *Message) All(id string) []Segment {
	var out []Segment
	for _, s := range m.Segments {
		if s.ID == id {
			out = append(out, s)
		}
	}
	return out
}

// MSH returns the header segment (Parse guarantees there is one).
func (m *Message) MSH() Segment { return m.Segments[0] }

// NumFields is the number of the last field present.
func (s Segment) NumFields() int { return len(s.fields) - 1 }

// Raw returns field n (1-based) still encoded, or nil if absent.
func (s Segment) Raw(n int) []byte {
	if n < 1 || n >= len(s.fields) {
		return nil
	}
	return s.fields[n]
}

// Repetitions is the number of repetitions of field n (0 if it is empty).
func (s Segment) Repetitions(n int) int {
	raw := s.Raw(n)
	if len(raw) == 0 {
		return 0
	}
	if s.isEncodingField(n) {
		return 1
	}
	return 1 + bytes.Count(raw, []byte{s.d.Repetition})
}

func (s Segment) isEncodingField(n int) bool {
	return (n == 1 || n == 2) && (s.ID == "MSH" || s.ID == "BHS" || s.ID == "FHS")
}

// Field returns field n, repetition 1, component 1, subcomponent 1, decoded.
func (s Segment) Field(n int) string { return s.Get(n, 1, 1, 1) }

// Component returns component c of the first repetition of field n, decoded.
func (s Segment) Component(n, c int) string { return s.Get(n, 1, c, 1) }

// Get returns one decoded value by position: field, repetition, component
// and subcomponent, all 1-based. An absent position gives "".
func (s Segment) Get(field, rep, comp, sub int) string {
	raw := s.Raw(field)
	if raw == nil {
		return ""
	}
	if s.isEncodingField(field) {
		if rep == 1 && comp == 1 && sub == 1 {
			return string(raw)
		}
		return ""
	}
	v := nth(raw, s.d.Repetition, rep)
	v = nth(v, s.d.Component, comp)
	v = nth(v, s.d.Subcomponent, sub)
	return Unescape(v, s.d)
}

// Rep returns repetition rep (1-based) of field n as a value that can be
// split further.
func (s Segment) Rep(n, rep int) Value {
	raw := s.Raw(n)
	if s.isEncodingField(n) {
		return Value{}
	}
	return Value{raw: nth(raw, s.d.Repetition, rep), d: s.d}
}

// Reps returns every repetition of field n, splitting the field once (linear
// in its length, however many repetitions it has).
func (s Segment) Reps(n int) []Value {
	raw := s.Raw(n)
	if len(raw) == 0 || s.isEncodingField(n) {
		return nil
	}
	out := make([]Value, 0, 1+bytes.Count(raw, []byte{s.d.Repetition}))
	for {
		i := bytes.IndexByte(raw, s.d.Repetition)
		if i < 0 {
			return append(out, Value{raw: raw, d: s.d})
		}
		out = append(out, Value{raw: raw[:i], d: s.d})
		raw = raw[i+1:]
	}
}

// Value is one repetition of a field, still encoded.
type Value struct {
	raw []byte
	d   Delimiters
}

// Empty reports whether the value has no content.
func (v Value) Empty() bool { return len(v.raw) == 0 }

// Get returns component comp, subcomponent sub (1-based), decoded.
func (v Value) Get(comp, sub int) string {
	return Unescape(nth(nth(v.raw, v.d.Component, comp), v.d.Subcomponent, sub), v.d)
}

// Component returns the whole component comp (1-based), decoded, with its
// subcomponents joined by the subcomponent separator.
func (v Value) Component(comp int) string {
	return Unescape(nth(v.raw, v.d.Component, comp), v.d)
}

// String returns the whole value decoded (delimiters within it kept).
func (v Value) String() string { return Unescape(v.raw, v.d) }

// nth returns the i-th (1-based) piece of b split on sep, or nil.
func nth(b []byte, sep byte, i int) []byte {
	if i < 1 {
		return nil
	}
	for ; i > 1; i-- {
		j := bytes.IndexByte(b, sep)
		if j < 0 {
			return nil
		}
		b = b[j+1:]
	}
	if j := bytes.IndexByte(b, sep); j >= 0 {
		return b[:j]
	}
	return b
}

// Unescape decodes HL7 escape sequences in v: \F\ \S\ \T\ \R\ \E\ become the
// declared delimiters, \Xhhhh\ becomes the bytes it encodes, \.br\ a line
// break; highlighting (\H\ \N\), character-set (\C..\ \M..\) and other
// formatting escapes are dropped. An unterminated or unknown sequence is kept
// as it was written, so nothing the sender wrote is lost.
func Unescape(v []byte, d Delimiters) string {
	i := bytes.IndexByte(v, d.Escape)
	if i < 0 {
		return string(v)
	}
	var b strings.Builder
	b.Grow(len(v))
	for i >= 0 {
		b.Write(v[:i])
		rest := v[i+1:]
		end := bytes.IndexByte(rest, d.Escape)
		if end < 0 {
			b.Write(v[i:])
			return b.String()
		}
		seq := rest[:end]
		if decodeEscape(&b, seq, d) {
			v = rest[end+1:]
		} else {
			// Unknown: keep the escape character literally and go on after it.
			b.WriteByte(d.Escape)
			v = rest
		}
		i = bytes.IndexByte(v, d.Escape)
	}
	b.Write(v)
	return b.String()
}

func decodeEscape(b *strings.Builder, seq []byte, d Delimiters) bool {
	if len(seq) == 0 {
		return false
	}
	switch string(seq) {
	case "F":
		b.WriteByte(d.Field)
		return true
	case "S":
		b.WriteByte(d.Component)
		return true
	case "T":
		b.WriteByte(d.Subcomponent)
		return true
	case "R":
		b.WriteByte(d.Repetition)
		return true
	case "E":
		b.WriteByte(d.Escape)
		return true
	case "H", "N":
		return true
	case ".br":
		b.WriteByte('\n')
		return true
	}
	switch seq[0] {
	case 'X':
		hex := seq[1:]
		if len(hex) == 0 || len(hex)%2 != 0 {
			return false
		}
		decoded := make([]byte, 0, len(hex)/2)
		for j := 0; j < len(hex); j += 2 {
			hi, ok1 := unhex(hex[j])
			lo, ok2 := unhex(hex[j+1])
			if !ok1 || !ok2 {
				return false
			}
			decoded = append(decoded, hi<<4|lo)
		}
		b.Write(decoded)
		return true
	case 'C', 'M', 'Z':
		return true
	case '.':
		// Formatting commands (.sp .in .ti .sk .ce .fi .nf): a line break
		// keeps the text readable.
		b.WriteByte('\n')
		return true
	}
	return false
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// Escape encodes s for a field value: the declared delimiters become escape
// sequences and CR/LF become \X0D\ and \X0A\, so the value can never break
// the message structure.
func Escape(s string, d Delimiters) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		var code string
		switch c {
		case d.Field:
			code = "F"
		case d.Component:
			code = "S"
		case d.Subcomponent:
			code = "T"
		case d.Repetition:
			code = "R"
		case d.Escape:
			code = "E"
		case '\r':
			code = "X0D"
		case '\n':
			code = "X0A"
		default:
			b.WriteByte(c)
			continue
		}
		b.WriteByte(d.Escape)
		b.WriteString(code)
		b.WriteByte(d.Escape)
	}
	return b.String()
}
