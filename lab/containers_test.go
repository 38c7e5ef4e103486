package lab

import (
	"net/netip"
	"testing"
)

func TestLastHost(t *testing.T) {
	for p, want := range map[string]string{
		"10.253.53.0/24": "10.253.53.254",
		"10.0.0.0/8":     "10.255.255.254",
		"192.0.2.0/30":   "192.0.2.2",
		"10.253.53.7/24": "10.253.53.254", // not masked: the host part is ignored
	} {
		if got := lastHost(netip.MustParsePrefix(p)); got.String() != want {
			t.Errorf("lastHost(%s) = %s; want %s", p, got, want)
		}
	}
}
