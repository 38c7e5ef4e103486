package main

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestAddRefusesBadInput: add checks its arguments before it touches
// anything and says which one is wrong (exit 2). What it changes is tested
// against the engine in controller/docker (TestHelperMakeBeforeBreak).
func TestAddRefusesBadInput(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"add", "-subnet", "10.0.0.0/24"}, `-addr "" is not an IPv4 address`},
		{[]string{"add", "-subnet", "fd00::/64", "-addr", "10.0.0.5"}, "is not an IPv4 prefix"},
		{[]string{"add", "-subnet", "10.0.0.0/24", "-addr", "10.0.1.5"}, "-addr 10.0.1.5 is not in -subnet 10.0.0.0/24"},
		{[]string{"add", "-subnet", "10.0.0.7/24", "-addr", "10.0.0.5", "-garp", "11"}, "-garp must be 0..10"},
		{[]string{"add", "-subnet", "10.0.0.0/24", "-addr", "10.0.0.5", "-gap", "2s"}, "-gap 0..1s"},
		{[]string{"add", "-subnet", "10.0.0.0/24", "-addr", "10.0.0.5", "-port", "70000"}, "-port 70000 is not a port"},
		{[]string{"serve", "-subnet", "10.0.0.0/24", "-addr", "10.0.0.5", "-port", "65536"}, "-port 65536 is not a port"},
		{[]string{"frobnicate"}, `unknown subcommand "frobnicate"`},
		{nil, "usage:"},
	} {
		var out, errb bytes.Buffer
		if code := run(tt.args, &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2", tt.args, code)
		}
		if !strings.Contains(errb.String(), tt.want) {
			t.Errorf("%v: said %q, want it to mention %q", tt.args, errb.String(), tt.want)
		}
		if out.Len() != 0 {
			t.Errorf("%v: printed %q on standard output", tt.args, out.String())
		}
	}
	p, a, err := parseAdd("10.0.0.7/24", "10.0.0.53", 53, 2, 10*time.Millisecond)
	if err != nil || p != netip.MustParsePrefix("10.0.0.0/24") || a != netip.MustParseAddr("10.0.0.53") {
		t.Fatalf("parseAdd = %v, %v, %v; want the masked subnet and the address", p, a, err)
	}
}
