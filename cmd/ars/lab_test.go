package main

import "testing"

// The lab and bench commands check their input before they need root or
// touch anything; with no daemon, lab commands say so with exit 3.
func TestLabCommandsRefuseBadInput(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"lab", "up", "-state-dir", dir, "-replicas", "a:bind9"}, exitUsage, "want NAME:IMPL:OS"},
		{[]string{"lab", "up", "-state-dir", dir, "-replicas", "a:nsd:linux"}, exitUsage, `unknown implementation "nsd"`},
		{[]string{"lab", "up", "-state-dir", dir, "-replicas", "a:bind9:bsd"}, exitUsage, "os must be windows or linux"},
		{[]string{"lab", "up", "-state-dir", dir, "-nodes", "0"}, exitUsage, "-nodes 0"},
		{[]string{"lab", "up", "-state-dir", dir, "-profile", "slow"}, exitUsage, `-profile "slow"`},
		{[]string{"lab", "attack", "dos", "-state-dir", dir}, exitUsage, "name one target"},
		{[]string{"lab", "attack", "dos", "a", "-impl", "bind9", "-state-dir", dir}, exitUsage, "name one target"},
		{[]string{"lab", "attack", "exploit", "-state-dir", dir}, exitUsage, "name one target"},
		{[]string{"lab", "node", "kill", "-state-dir", dir}, exitUsage, "name a NODE or give -leader"},
		{[]string{"lab", "status", "-state-dir", dir}, exitUnreachable, "no lab is running"},
		{[]string{"lab", "attack", "dos", "a", "-state-dir", dir}, exitUnreachable, "no lab is running"},
		{[]string{"bench", "-trials", "0"}, exitUsage, "-trials 0"},
		{[]string{"bench", "-modes", "ars,haproxy"}, exitUsage, `unknown mode "haproxy"`},
		{[]string{"bench", "-profiles", "fast"}, exitUsage, `unknown profile "fast"`},
		{[]string{"bench", "-load-fraction", "1.5"}, exitUsage, "-load-fraction"},
	}
	for _, c := range cases {
		cli(t, nil, "", c.args...).fails(t, c.code, c.want)
	}
}
