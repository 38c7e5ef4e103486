package docker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"testing"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/fsm"
)

func TestConfigValidate(t *testing.T) {
	tls := TLS{CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem"}
	tests := []struct {
		name string
		cfg  Config
		want string // "" = valid
	}{
		{"unix", Config{Hosts: []Host{{Name: "lx1", Endpoint: "unix:///var/run/docker.sock"}}}, ""},
		{"no hosts", Config{}, "at least one host"},
		{"bad name", Config{Hosts: []Host{{Name: "-x", Endpoint: "unix:///s"}}}, "name"},
		{"duplicate", Config{Hosts: []Host{{Name: "a", Endpoint: "unix:///s"}, {Name: "a", Endpoint: "unix:///t"}}}, "listed twice"},
		{"ssh", Config{Hosts: []Host{{Name: "a", Endpoint: "ssh://h"}}}, "unix://PATH or tcp://HOST:PORT"},
		{"unix relative", Config{Hosts: []Host{{Name: "a", Endpoint: "unix://rel/path"}}}, "absolute"},
		{"unix with tls", Config{Hosts: []Host{{Name: "a", Endpoint: "unix:///s", TLS: tls}}}, "tcp endpoints only"},
		{"tcp without tls", Config{Hosts: []Host{{Name: "a", Endpoint: "tcp://10.0.0.1:2376"}}}, "without TLS"},
		{"tcp loopback", Config{Hosts: []Host{{Name: "a", Endpoint: "tcp://127.0.0.1:2375"}}}, ""},
		{"tcp no port", Config{Hosts: []Host{{Name: "a", Endpoint: "tcp://h", TLS: tls}}}, "tcp://HOST:PORT"},
		{"partial tls", Config{Hosts: []Host{{Name: "a", Endpoint: "tcp://h:2376", TLS: TLS{CAFile: "ca.pem"}}}}, "all of CA"},
		{"negative timeout", Config{Hosts: []Host{{Name: "a", Endpoint: "unix:///s"}}, CallTimeout: -1}, "positive"},
		{"bad park", Config{Hosts: []Host{{Name: "a", Endpoint: "unix:///s"}}, ParkNetwork: "a b"}, "park network"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cfg
			c.setDefaults()
			err := c.validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
	// A TLS file that does not exist is a configuration error at New.
	_, err := New(Config{Hosts: []Host{{Name: "a", Endpoint: "tcp://h:2376", TLS: TLS{CAFile: "/nonexistent/ca.pem", CertFile: "/nonexistent/c.pem", KeyFile: "/nonexistent/k.pem"}}}})
	if err == nil {
		t.Fatal("New accepted TLS files that do not exist")
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		err   error
		want  error
		retry bool
	}{
		{fmt.Errorf("x: %w", errCallTimeout), driver.ErrUnavailable, true},
		{context.Canceled, driver.ErrUnavailable, false},
		{cerrdefs.ErrNotFound, driver.ErrNotFound, false},
		{cerrdefs.ErrConflict, driver.ErrConflict, true},
		{cerrdefs.ErrInvalidArgument, driver.ErrInvalid, false},
		{cerrdefs.ErrPermissionDenied.WithMessage("Address already in use"), driver.ErrConflict, true},
		{cerrdefs.ErrPermissionDenied, driver.ErrDenied, false},
		{cerrdefs.ErrInternal, driver.ErrFailed, true},
		{errors.New("connection reset by peer"), driver.ErrUnavailable, true},
		{fmt.Errorf("%w: already", driver.ErrInvalidState), driver.ErrInvalidState, false},
		{fmt.Errorf("%w: %w", errRetry, cerrdefs.ErrConflict), driver.ErrConflict, true},
		{fmt.Errorf("ping: %w", x509.UnknownAuthorityError{}), driver.ErrDenied, false},
		{&tls.CertificateVerificationError{Err: errors.New("expired")}, driver.ErrDenied, false},
		{errors.New("read tcp 127.0.0.1:1->127.0.0.1:2: remote error: tls: unknown certificate authority"), driver.ErrDenied, false},
		{errors.New("remote error: tls: internal error"), driver.ErrUnavailable, true},
	}
	for _, tt := range tests {
		got, retry := classify(tt.err)
		if got != tt.want || retry != tt.retry {
			t.Errorf("classify(%v) = %v, %v; want %v, %v", tt.err, got, retry, tt.want, tt.retry)
		}
		if !errors.Is(classified(tt.err), tt.want) {
			t.Errorf("classified(%v) does not wrap %v", tt.err, tt.want)
		}
	}
}

func TestSpecHashAndNames(t *testing.T) {
	r := fsm.ReplicaSpec{Name: "u1", Platform: fsm.PlatformContainer, Image: "ars-lab/unbound:latest"}
	h0 := specHash(r)
	if h0 != specHash(r) || len(h0) != 16 {
		t.Fatalf("spec hash %q not stable or not 16 hex digits", h0)
	}
	r2 := r
	r2.Container = &fsm.ContainerSpec{Env: []string{"A=1"}}
	r3 := r
	r3.Image = "ars-lab/unbound:other"
	if specHash(r2) == h0 || specHash(r3) == h0 {
		t.Fatal("a changed spec or image keeps the hash")
	}
	r4 := r
	r4.Impl, r4.OS = "other", "windows" // not part of the container definition
	if specHash(r4) != h0 {
		t.Fatal("fields outside the container definition change the hash")
	}
	if ContainerName(r) != "ars-u1" || serviceNetwork(r) != fsm.DefaultContainerNetwork || serviceNetwork(r2) != fsm.DefaultContainerNetwork {
		t.Fatal("names")
	}
}
