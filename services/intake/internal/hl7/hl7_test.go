package hl7_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-health/herald/services/intake/internal/hl7"
)

func example(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("../../testdata/oru_r01_critical_pneumothorax.hl7")
	require.NoError(t, err)
	return b
}

func TestParseExample(t *testing.T) {
	m, err := hl7.Parse(example(t))
	require.NoError(t, err)
	msh := m.MSH()
	require.Equal(t, "|", msh.Field(1))
	require.Equal(t, `^~\&`, msh.Field(2))
	require.Equal(t, "RZZ", msh.Field(4))
	require.Equal(t, "ORU", msh.Component(9, 1))
	require.Equal(t, "R01", msh.Component(9, 2))
	require.Equal(t, "MSG20261129000123", msh.Field(10))
	require.Equal(t, "2.4", msh.Field(12))

	pid, ok := m.Segment("PID")
	require.True(t, ok)
	require.Equal(t, 2, pid.Repetitions(3))
	require.Equal(t, "9990000018", pid.Get(3, 1, 1, 1))
	require.Equal(t, "NHS", pid.Get(3, 1, 4, 1))
	require.Equal(t, "NH", pid.Get(3, 1, 5, 1))
	require.Equal(t, "MR", pid.Get(3, 2, 5, 1))

	obr, _ := m.Segment("OBR")
	require.Equal(t, "ACC20261129001", obr.Component(3, 1))
	require.Equal(t, "F", obr.Field(25))
	require.Equal(t, "RADIOLOGIST", obr.Get(32, 1, 1, 2), "OBR-32 subcomponents")
	require.Len(t, m.All("OBX"), 3)
}

func TestParseTable(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		seg     string
		field   int
		rep     int
		comp    int
		sub     int
		want    string
		wantErr string
	}{
		{name: "escaped delimiters are decoded", give: "MSH|^~\\&|A\rOBX|1|TX|X||a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f", seg: "OBX", field: 5, rep: 1, comp: 1, sub: 1, want: `a|b^c&d~e\f`},
		{name: "hex escape", give: "MSH|^~\\&|A\rOBX|1|TX|X||caf\\XC3A9\\", seg: "OBX", field: 5, rep: 1, comp: 1, sub: 1, want: "café"},
		{name: "line break escape", give: "MSH|^~\\&|A\rOBX|1|FT|X||one\\.br\\two", seg: "OBX", field: 5, rep: 1, comp: 1, sub: 1, want: "one\ntwo"},
		{name: "highlight dropped", give: "MSH|^~\\&|A\rOBX|1|FT|X||\\H\\bold\\N\\", seg: "OBX", field: 5, rep: 1, comp: 1, sub: 1, want: "bold"},
		{name: "bad hex kept literally", give: "MSH|^~\\&|A\rOBX|1|TX|X||\\XZZ\\", seg: "OBX", field: 5, rep: 1, comp: 1, sub: 1, want: `\XZZ\`},
		{name: "unterminated escape kept", give: "MSH|^~\\&|A\rOBX|1|TX|X||a\\Fb", seg: "OBX", field: 5, rep: 1, comp: 1, sub: 1, want: `a\Fb`},
		{name: "second repetition third component", give: "MSH|^~\\&|A\rPID|1||a^b^c~d^e^f", seg: "PID", field: 3, rep: 2, comp: 3, sub: 1, want: "f"},
		{name: "subcomponent", give: "MSH|^~\\&|A\rOBR|1||x^y&z", seg: "OBR", field: 3, rep: 1, comp: 2, sub: 2, want: "z"},
		{name: "absent position is empty", give: "MSH|^~\\&|A\rPID|1", seg: "PID", field: 9, rep: 1, comp: 1, sub: 1, want: ""},
		{name: "declared delimiters honoured", give: "MSH#*!$%#A\rPID#1##a*b!c*d%e#x", seg: "PID", field: 3, rep: 2, comp: 2, sub: 2, want: "e"},
		{name: "declared escape decodes declared separators", give: "MSH#*!$%#A\rOBX#1#TX#X##p$F$q$S$r", seg: "OBX", field: 5, rep: 1, comp: 1, sub: 1, want: "p#q*r"},
		{name: "LF and CRLF segment separators tolerated", give: "MSH|^~\\&|A\r\nPID|1||x\nOBR|1||acc", seg: "OBR", field: 3, rep: 1, comp: 1, sub: 1, want: "acc"},
		{name: "v2.3 short MSH-2", give: "MSH|^~|A\rPID|1||a&b", seg: "PID", field: 3, rep: 1, comp: 1, sub: 2, want: "b"},
		{name: "not MSH", give: "PID|1||x", wantErr: "does not start with an MSH segment"},
		{name: "MSH-2 unterminated", give: "MSH|^~\\&", wantErr: "MSH-2 encoding characters are not terminated"},
		{name: "duplicate delimiter", give: "MSH|^^\\&|A", wantErr: "twice"},
		{name: "alphanumeric delimiter", give: "MSH|^~\\A|A", wantErr: "unusable delimiter"},
		{name: "bad segment id", give: "MSH|^~\\&|A\rP!D|1", wantErr: "invalid segment id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Given a message, when it is parsed,
			m, err := hl7.Parse([]byte(tt.give))
			if tt.wantErr != "" {
				// then a malformed one is refused with the reason,
				require.ErrorIs(t, err, hl7.ErrMalformed)
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			// then the value at the position is decoded.
			seg, ok := m.Segment(tt.seg)
			require.True(t, ok)
			require.Equal(t, tt.want, seg.Get(tt.field, tt.rep, tt.comp, tt.sub))
		})
	}
}

func TestEscapeRoundTrip(t *testing.T) {
	d := hl7.DefaultDelimiters()
	for _, s := range []string{"plain", `a|b^c~d\e&f`, "line\rbreak\nx", ""} {
		got := hl7.Unescape([]byte(hl7.Escape(s, d)), d)
		require.Equal(t, s, got)
	}
}

func TestBuildAckParsesBack(t *testing.T) {
	m, err := hl7.Parse(example(t))
	require.NoError(t, err)
	ack := hl7.BuildAck(hl7.HeaderOf(m), hl7.Ack{
		Code:      hl7.AckError,
		Text:      "PID-3: no valid NHS number | check digit",
		ControlID: "ACK1",
		Time:      time.Date(2026, 11, 29, 14, 35, 13, 0, time.UTC),
		Problems:  []hl7.AckProblem{{Field: "PID-3", Problem: "no valid NHS number (check digit)", Code: "102"}},
	})
	got, err := hl7.Parse(ack)
	require.NoError(t, err)
	msh := got.MSH()
	require.Equal(t, "CRITALERT", msh.Field(3))
	require.Equal(t, "CRIS", msh.Field(5))
	require.Equal(t, "RZZ", msh.Field(6))
	require.Equal(t, "ACK", msh.Component(9, 1))
	msa, _ := got.Segment("MSA")
	require.Equal(t, "AE", msa.Field(1))
	require.Equal(t, "MSG20261129000123", msa.Field(2))
	require.Equal(t, "PID-3: no valid NHS number | check digit", msa.Field(3))
	errSeg, ok := got.Segment("ERR")
	require.True(t, ok)
	require.Equal(t, "PID", errSeg.Get(2, 1, 1, 1))
	require.Equal(t, "3", errSeg.Get(2, 1, 3, 1))
	require.Equal(t, "102", errSeg.Get(3, 1, 1, 1))
	require.Equal(t, "no valid NHS number (check digit)", errSeg.Field(8))
	require.False(t, strings.Contains(string(ack), "\n"))
}

func FuzzParse(f *testing.F) {
	f.Add(example(f))
	for _, name := range []string{"ack_aa.hl7", "ack_ae.hl7"} {
		b, err := os.ReadFile("../../testdata/" + name)
		require.NoError(f, err)
		f.Add(b)
	}
	f.Add([]byte("MSH#*!$%#A\rPID#1##a*b!c*d%e#x"))
	f.Add([]byte("MSH|^~\\&|A\rOBX|1|TX|X||\\XC3A9\\\\F\\\\.br\\"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := hl7.Parse(data)
		if err != nil {
			return
		}
		// Every accessor is total on any parsed message (bounded loops:
		// the accessors are positional, so visiting every position of a
		// pathological message would be quadratic in the test, not the
		// parser).
		for _, s := range m.Segments[:min(len(m.Segments), 20)] {
			for n := 0; n <= min(s.NumFields()+1, 30); n++ {
				reps := s.Reps(n)
				if n > 2 && len(reps) != s.Repetitions(n) {
					t.Fatalf("field %d: Reps gives %d, Repetitions %d", n, len(reps), s.Repetitions(n))
				}
				for r := 0; r <= min(len(reps)+1, 5); r++ {
					_ = s.Get(n, r, 1, 1)
					_ = s.Get(n, r, 2, 2)
					_ = s.Rep(n, r).String()
				}
				for _, v := range reps[:min(len(reps), 5)] {
					_ = v.Get(1, 1)
					_ = v.Component(2)
				}
			}
		}
		h := hl7.HeaderOf(m)
		ack := hl7.BuildAck(h, hl7.Ack{Code: hl7.AckError, Text: "x", Problems: []hl7.AckProblem{{Field: "MSH-10", Problem: "p"}}})
		// An ACK to any message is itself a valid message.
		if _, err := hl7.Parse(ack); err != nil {
			t.Fatalf("ACK does not parse: %v\n%q", err, ack)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	data := example(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		m, err := hl7.Parse(data)
		if err != nil {
			b.Fatal(err)
		}
		pid, _ := m.Segment("PID")
		_ = pid.Get(3, 1, 1, 1)
	}
}
