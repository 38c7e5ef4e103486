package lab

import "testing"

const procNetDev = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1200      12    0    0    0     0          0         0     1200      12    0    0    0     0       0          0
arsbench-svc:  98765     431    0    0    0     0          0         3    12345     400    0    0    0     0       0          0
  eth0:     100       7    0    0    0     0          0         0      100       7    0    0    0     0       0          0
`

// rxPackets counts what the namespace received on its links, not on
// loopback, and refuses a table it cannot read.
func TestRxPackets(t *testing.T) {
	got, err := rxPackets(procNetDev)
	if err != nil {
		t.Fatal(err)
	}
	if got != 438 {
		t.Errorf("rxPackets = %d, want 431 + 7", got)
	}
	if n, err := rxPackets(""); err != nil || n != 0 {
		t.Errorf("empty table: %d, %v", n, err)
	}
	for _, bad := range []string{"  eth0: 100\n", "  eth0: 100 seven 0\n"} {
		if _, err := rxPackets(bad); err == nil {
			t.Errorf("rxPackets(%q) took it", bad)
		}
	}
}

// A backend serves when the client's queries reach it, not when only a
// health check does.
func TestServing(t *testing.T) {
	for _, tt := range []struct {
		before, now uint64
		want        bool
	}{
		{100, 100, false},
		{100, 101, false}, // a health check
		{100, 102, false}, // a check and an ARP
		{100, 103, true},
		{100, 110, true},
	} {
		if got := serving(tt.before, tt.now); got != tt.want {
			t.Errorf("serving(%d, %d) = %t, want %t", tt.before, tt.now, got, tt.want)
		}
	}
}
