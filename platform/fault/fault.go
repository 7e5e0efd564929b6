// Package fault classifies errors by what a caller can do about them, without
// depending on any transport. Domain code returns these kinds; the edge
// (platform/grpcserver, HTTP handlers) maps them to status codes in one place.
package fault

import (
	"errors"
	"strings"
)

// Kinds of error. Test with errors.Is.
var (
	// ErrInvalid: the request is malformed; retrying it unchanged will fail again.
	ErrInvalid = errors.New("invalid argument")
	// ErrNotFound: the thing named does not exist.
	ErrNotFound = errors.New("not found")
	// ErrFailedPrecondition: the request is well formed but not allowed in the current state.
	ErrFailedPrecondition = errors.New("failed precondition")
	// ErrAlreadyExists: the thing to create exists.
	ErrAlreadyExists = errors.New("already exists")
	// ErrUnavailable: a dependency is down; the caller may retry later.
	ErrUnavailable = errors.New("unavailable")
	// ErrPermissionDenied: the caller is known but not allowed.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrUnauthenticated: the caller is not identified.
	ErrUnauthenticated = errors.New("unauthenticated")
)

// Violation names one field of a request and what is wrong with it.
type Violation struct {
	Field   string
	Problem string
}

// InvalidError is an ErrInvalid with the offending fields.
type InvalidError struct {
	Msg        string
	Violations []Violation
}

func (e *InvalidError) Error() string {
	var b strings.Builder
	b.WriteString(e.Msg)
	for i, v := range e.Violations {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(v.Field)
		b.WriteString(": ")
		b.WriteString(v.Problem)
	}
	return b.String()
}

// Is reports that an InvalidError is an ErrInvalid.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

// Invalid returns an ErrInvalid naming the fields at fault.
func Invalid(msg string, v ...Violation) error {
	return &InvalidError{Msg: msg, Violations: v}
}

type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string        { return e.msg }
func (e *kindError) Is(target error) bool { return target == e.kind }

// Precondition returns an ErrFailedPrecondition with msg, which should name
// the current state ("alert is CANCELLED").
func Precondition(msg string) error { return &kindError{kind: ErrFailedPrecondition, msg: msg} }

// NotFound returns an ErrNotFound with msg.
func NotFound(msg string) error { return &kindError{kind: ErrNotFound, msg: msg} }

// Unavailable returns an ErrUnavailable with msg.
func Unavailable(msg string) error { return &kindError{kind: ErrUnavailable, msg: msg} }

// PermissionDenied returns an ErrPermissionDenied with msg.
func PermissionDenied(msg string) error { return &kindError{kind: ErrPermissionDenied, msg: msg} }

// Unauthenticated returns an ErrUnauthenticated with msg.
func Unauthenticated(msg string) error { return &kindError{kind: ErrUnauthenticated, msg: msg} }

// AlreadyExists returns an ErrAlreadyExists with msg.
func AlreadyExists(msg string) error { return &kindError{kind: ErrAlreadyExists, msg: msg} }

// Violations returns the field violations carried by err, if any.
func Violations(err error) []Violation {
	var ie *InvalidError
	if errors.As(err, &ie) {
		return ie.Violations
	}
	return nil
}
