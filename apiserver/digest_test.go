package apiserver

import (
	"context"
	"errors"
	"testing"

	"github.com/ars-project/ars/api"
)

// digestBackend is a fakeBackend that can digest its state.
type digestBackend struct{ *fakeBackend }

func (digestBackend) StateDigest() (uint64, string, error) { return 42, "abc123", nil }

func TestStatusDigestOnlyWhenAskedAndSupported(t *testing.T) {
	// A backend that cannot digest: plain status works, ?digest=1 is a
	// clear 400.
	ts := startServer(t, "n1", newFakeBackend("n1", true), nil)
	c := newTestClient(t, ts.URL, secretReader, caOnly(t))
	st, err := c.Status(context.Background())
	if err != nil || st.StateDigest != "" || st.StateIndex != 0 {
		t.Fatalf("plain status %+v, %v: want no digest", st, err)
	}
	if _, err := c.StatusDigest(context.Background()); !errors.Is(err, api.ErrBadRequest) {
		t.Fatalf("digest from a backend without one: err = %v, want a bad request", err)
	}

	fb := newFakeBackend("n2", true)
	ts2 := startServer(t, "n2", fb, func(cfg *ServerConfig) { cfg.Backend = digestBackend{fb} })
	c2 := newTestClient(t, ts2.URL, secretReader, caOnly(t))
	if st, err := c2.Status(context.Background()); err != nil || st.StateDigest != "" {
		t.Fatalf("plain status %+v, %v: the digest is computed only when asked for", st, err)
	}
	st, err = c2.StatusDigest(context.Background())
	if err != nil || st.StateIndex != 42 || st.StateDigest != "abc123" {
		t.Fatalf("status?digest=1 = %+v, %v", st, err)
	}
}
