package fault

import (
	"errors"
	"fmt"
	"testing"
)

func TestKindsSurviveWrapping(t *testing.T) {
	cases := []struct {
		name string
		err  error
		kind error
	}{
		{"invalid", Invalid("raise alert", Violation{"report.accession", "is required"}), ErrInvalid},
		{"precondition", Precondition("alert is CANCELLED"), ErrFailedPrecondition},
		{"not found", NotFound("alert a1"), ErrNotFound},
		{"unavailable", Unavailable("kafka"), ErrUnavailable},
		{"permission", PermissionDenied("not a fail-safe officer"), ErrPermissionDenied},
		{"unauthenticated", Unauthenticated("no identity"), ErrUnauthenticated},
		{"exists", AlreadyExists("bundle v3"), ErrAlreadyExists},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wrapped := fmt.Errorf("handle command: %w", c.err)
			if !errors.Is(wrapped, c.kind) {
				t.Fatalf("errors.Is(%v, %v) = false, want true", wrapped, c.kind)
			}
			if errors.Is(wrapped, errors.New("other")) {
				t.Fatal("matched an unrelated error")
			}
		})
	}
}

func TestInvalidNamesFields(t *testing.T) {
	err := fmt.Errorf("raise: %w", Invalid("bad report",
		Violation{"patient.nhs_number", "fails the modulus 11 check"},
		Violation{"tenant", "must be a 3-character ODS code"}))
	want := "raise: bad report: patient.nhs_number: fails the modulus 11 check; tenant: must be a 3-character ODS code"
	if got := err.Error(); got != want {
		t.Fatalf("message: got %q, want %q", got, want)
	}
	if got := Violations(err); len(got) != 2 || got[1].Field != "tenant" {
		t.Fatalf("violations: got %+v, want two with tenant second", got)
	}
}
