// Package mllp implements the Minimal Lower Layer Protocol that carries HL7
// v2 over TCP: each message is framed as 0x0B, message, 0x1C, 0x0D.
//
// The Reader copes with a frame split across many reads, several frames in
// one read, noise between frames, a frame whose end block comes without its
// carriage return (the frame is complete at the end block), and frames
// larger than its bound (they are drained and reported, never buffered
// whole). It holds at most one bounded frame in memory.
package mllp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// Frame delimiters.
const (
	StartBlock     = 0x0B
	EndBlock       = 0x1C
	CarriageReturn = 0x0D
)

// ErrMalformed is returned for a stream that is not MLLP (too much noise
// before a start block).
var ErrMalformed = errors.New("malformed MLLP stream")

// maxNoise is how many bytes outside any frame are skipped before the
// stream is declared not to be MLLP.
const maxNoise = 4096

// headSize is how much of an oversize frame is kept so that its MSH segment
// can still be read for the acknowledgement.
const headSize = 1024

// OversizeError reports a frame larger than the Reader's bound. The frame was
// drained to its end block, so the stream can go on with the next frame.
type OversizeError struct {
	// Limit is the bound in bytes.
	Limit int
	// Head is the first bytes of the frame (up to 1 KiB), enough to read
	// MSH and answer with an ACK that names the message.
	Head []byte
}

func (e *OversizeError) Error() string {
	return fmt.Sprintf("MLLP frame exceeds %d bytes", e.Limit)
}

// Reader reads MLLP frames from a byte stream. It is not safe for
// concurrent use.
type Reader struct {
	br    *bufio.Reader
	max   int
	frame []byte
	// started, when set, is called as each frame's start block is read
	// (the server then gives the rest of the frame its own deadline).
	started func()
}

// OnFrameStart makes ReadFrame call fn as soon as a frame's start block
// has been read.
func (r *Reader) OnFrameStart(fn func()) { r.started = fn }

// NewReader returns a Reader that rejects frames larger than maxFrame bytes.
func NewReader(r io.Reader, maxFrame int) *Reader {
	if maxFrame <= 0 {
		maxFrame = 1 << 20
	}
	return &Reader{br: bufio.NewReaderSize(r, 32<<10), max: maxFrame}
}

// ReadFrame returns the next message (without its framing bytes). The slice
// is valid until the next call. It returns io.EOF at a clean end of stream,
// io.ErrUnexpectedEOF if the stream ends inside a frame, *OversizeError for
// a frame over the bound (the stream stays usable), ErrMalformed for a
// stream with too much noise between frames, and any error of the
// underlying reader (such as a deadline) as it is.
func (r *Reader) ReadFrame() ([]byte, error) {
	if err := r.skipToStart(); err != nil {
		return nil, err
	}
	if r.started != nil {
		r.started()
	}
	r.frame = r.frame[:0]
	oversize := false
	for {
		chunk, err := r.br.ReadSlice(EndBlock)
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		complete := err == nil
		if complete {
			chunk = chunk[:len(chunk)-1]
		}
		if !oversize {
			if len(r.frame)+len(chunk) > r.max {
				oversize = true
				keep := min(headSize, r.max) - len(r.frame)
				if keep > 0 {
					r.frame = append(r.frame, chunk[:min(keep, len(chunk))]...)
				}
			} else {
				r.frame = append(r.frame, chunk...)
			}
		}
		if !complete {
			continue
		}
		// The end block is followed by a carriage return. The frame is
		// complete at the end block: waiting for the CR would leave a sender
		// that omits it without an ACK until it sends something else. A CR
		// already read is consumed here; one still in flight is skipped as
		// whitespace before the next start block.
		if r.br.Buffered() > 0 {
			if b, err := r.br.Peek(1); err == nil && b[0] == CarriageReturn {
				_, _ = r.br.Discard(1)
			}
		}
		if oversize {
			head := append([]byte(nil), r.frame...)
			return nil, &OversizeError{Limit: r.max, Head: head}
		}
		return r.frame, nil
	}
}

// skipToStart discards bytes up to and including the next start block.
// Whitespace between frames is normal; other noise is tolerated up to a
// bound.
func (r *Reader) skipToStart() error {
	skipped := 0
	for {
		c, err := r.br.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) && skipped > 0 {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		switch c {
		case StartBlock:
			return nil
		case '\r', '\n', ' ', '\t':
			continue
		}
		skipped++
		if skipped > maxNoise {
			return fmt.Errorf("%w: %d bytes outside any frame", ErrMalformed, skipped)
		}
	}
}

// WriteFrame writes msg as one MLLP frame.
func WriteFrame(w io.Writer, msg []byte) error {
	buf := make([]byte, 0, len(msg)+3)
	buf = append(buf, StartBlock)
	buf = append(buf, msg...)
	buf = append(buf, EndBlock, CarriageReturn)
	_, err := w.Write(buf)
	return err
}
