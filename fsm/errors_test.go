package fsm

import (
	"errors"
	"fmt"
	"testing"
)

func TestCode(t *testing.T) {
	for _, c := range []struct {
		err  error
		code string
	}{
		{nil, ""},
		{errors.New("other"), ""},
		{ErrInvalid, "invalid"},
		{fmt.Errorf("%w: x", ErrUnknownService), "unknown_service"},
		{fmt.Errorf("%w: x", ErrUnknownReplica), "unknown_replica"},
		{fmt.Errorf("%w: x", ErrStaleGeneration), "stale_generation"},
		{fmt.Errorf("%w: x", ErrStaleTerm), "stale_term"},
		{fmt.Errorf("%w: x", ErrUnknownCommand), "unknown_command"},
		{fmt.Errorf("%w: x", ErrCorrupt), "corrupt"},
		{fmt.Errorf("%w: x", ErrConflict), "conflict"},
		{fmt.Errorf("outer: %w", fmt.Errorf("%w: inner", ErrConflict)), "conflict"},
		{errors.Join(ErrInvalid, ErrCorrupt), "corrupt"},
	} {
		if got := Code(c.err); got != c.code {
			t.Errorf("Code(%v) = %q, want %q", c.err, got, c.code)
		}
		if c.code != "" {
			if s := FromCode(c.code); !errors.Is(c.err, s) {
				t.Errorf("FromCode(%q) = %v, not matched by %v", c.code, s, c.err)
			}
		}
	}
	if FromCode("") != nil || FromCode("nope") != nil {
		t.Error("FromCode of unknown code not nil")
	}
	for _, e := range []error{ErrCorrupt, ErrUnknownCommand} {
		if !Fatal(fmt.Errorf("%w: x", e)) {
			t.Errorf("Fatal(%v) = false", e)
		}
	}
	for _, e := range []error{nil, ErrInvalid, ErrStaleTerm, ErrStaleGeneration, ErrConflict, ErrUnknownService, ErrUnknownReplica} {
		if Fatal(e) {
			t.Errorf("Fatal(%v) = true", e)
		}
	}
}
