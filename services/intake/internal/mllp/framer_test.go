package mllp_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-health/herald/services/intake/internal/mllp"
)

func frame(s string) string { return "\x0b" + s + "\x1c\r" }

func readAll(t *testing.T, r *mllp.Reader) ([]string, error) {
	t.Helper()
	var got []string
	for {
		f, err := r.ReadFrame()
		if err != nil {
			return got, err
		}
		got = append(got, string(f))
	}
}

func TestReaderTable(t *testing.T) {
	tests := []struct {
		name    string
		give    io.Reader
		max     int
		want    []string
		wantErr error
	}{
		{name: "one frame", give: bytes.NewBufferString(frame("MSH|a")), want: []string{"MSH|a"}, wantErr: io.EOF},
		{name: "several frames in one read", give: bytes.NewBufferString(frame("A") + frame("B") + frame("C")), want: []string{"A", "B", "C"}, wantErr: io.EOF},
		{name: "frame split byte by byte", give: iotest.OneByteReader(bytes.NewBufferString(frame("MSH|split") + frame("two"))), want: []string{"MSH|split", "two"}, wantErr: io.EOF},
		{name: "whitespace between frames", give: bytes.NewBufferString(frame("A") + "\r\n" + frame("B")), want: []string{"A", "B"}, wantErr: io.EOF},
		{name: "missing trailing CR tolerated", give: bytes.NewBufferString("\x0bA\x1c\x0bB\x1c\r"), want: []string{"A", "B"}, wantErr: io.EOF},
		{name: "truncated frame", give: bytes.NewBufferString(frame("A") + "\x0bpartial"), want: []string{"A"}, wantErr: io.ErrUnexpectedEOF},
		{name: "noise only", give: bytes.NewBufferString(string(bytes.Repeat([]byte("x"), 5000))), wantErr: mllp.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			max := tt.max
			if max == 0 {
				max = 1024
			}
			// Given a stream, when its frames are read,
			got, err := readAll(t, mllp.NewReader(tt.give, max))
			// then each message comes out whole and the end is reported.
			require.Equal(t, tt.want, got)
			require.ErrorIs(t, err, tt.wantErr)
		})
	}
}

func TestReaderOversizeIsDrainedAndStreamContinues(t *testing.T) {
	big := "MSH|^~\\&|CRIS|RZZ|||||ORU^R01|BIG1|P|2.4\r" + string(bytes.Repeat([]byte("x"), 200_000))
	r := mllp.NewReader(bytes.NewBufferString(frame(big)+frame("next")), 1000)

	_, err := r.ReadFrame()
	var over *mllp.OversizeError
	require.True(t, errors.As(err, &over), "got %v", err)
	require.Equal(t, 1000, over.Limit)
	require.LessOrEqual(t, len(over.Head), 1000)
	require.True(t, bytes.HasPrefix(over.Head, []byte("MSH|^~\\&|CRIS|RZZ")))

	f, err := r.ReadFrame()
	require.NoError(t, err)
	require.Equal(t, "next", string(f))
}

func FuzzReader(f *testing.F) {
	b, err := os.ReadFile("../../testdata/oru_r01_critical_pneumothorax.mllp")
	require.NoError(f, err)
	f.Add(b, 2048)
	f.Add(append(append([]byte{}, b...), b...), 64)
	f.Add([]byte("\x0bA\x1c\x0bB\x1c\r"), 8)
	f.Add([]byte("\x1c\r\x0b\x0b\x1c"), 1)
	f.Fuzz(func(t *testing.T, data []byte, max int) {
		if max <= 0 || max > 1<<16 {
			max = 1 << 16
		}
		r := mllp.NewReader(bytes.NewReader(data), max)
		for i := 0; ; i++ {
			if i > len(data)+1 {
				t.Fatalf("more frames than input bytes: the reader is not making progress")
			}
			fr, err := r.ReadFrame()
			if err != nil {
				var over *mllp.OversizeError
				if errors.As(err, &over) {
					if len(over.Head) > max {
						t.Fatalf("oversize head %d > bound %d", len(over.Head), max)
					}
					continue
				}
				return
			}
			if len(fr) > max {
				t.Fatalf("frame %d > bound %d", len(fr), max)
			}
			if bytes.IndexByte(fr, mllp.EndBlock) >= 0 {
				t.Fatalf("frame contains an end block")
			}
		}
	})
}

// A sender that ends a frame with 0x1C and no 0x0D, then waits for its ACK,
// gets its frame at once: the reader does not wait for the next byte. A CR
// that arrives late is skipped before the next frame.
func TestReaderEndBlockAloneCompletesTheFrame(t *testing.T) {
	pr, pw := io.Pipe()
	defer pr.Close()
	r := mllp.NewReader(pr, 1024)
	frames := make(chan string, 2)
	go func() {
		for {
			f, err := r.ReadFrame()
			if err != nil {
				close(frames)
				return
			}
			frames <- string(f)
		}
	}()
	_, err := pw.Write([]byte("\x0bMSH|first\x1c"))
	require.NoError(t, err)
	// Nothing more is written until the frame has been read (a reader that
	// waits for the CR never returns it: the test then fails, not hangs).
	select {
	case f := <-frames:
		require.Equal(t, "MSH|first", f)
	case <-time.After(10 * time.Second):
		t.Fatal("the frame ending 0x1C without 0x0D was not returned")
	}
	_, err = pw.Write([]byte("\r\x0bMSH|second\x1c\r"))
	require.NoError(t, err)
	require.Equal(t, "MSH|second", <-frames)
	require.NoError(t, pw.Close())
	_, open := <-frames
	require.False(t, open, "a clean end of stream after the last frame")
}
