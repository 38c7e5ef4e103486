package main

import (
	"strings"
	"testing"

	"github.com/ars-project/ars/api"
)

func TestDiskTextShowsTheMeasuredValues(t *testing.T) {
	free := uint64(4096)
	for _, tc := range []struct {
		d          api.DiskStatus
		want, omit []string
	}{
		{api.DiskStatus{Healthy: true, FreeBytes: &free, ProbeSeconds: 0.0021}, []string{"healthy", "4096 bytes free", "probe 2.1 ms"}, []string{"UNHEALTHY"}},
		{api.DiskStatus{Cause: "probe stalled"}, []string{"UNHEALTHY (probe stalled)", "refuses writes"}, []string{"bytes free", " ms"}},
	} {
		got := diskText(&tc.d)
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("diskText(%+v) = %q; lacks %q", tc.d, got, w)
			}
		}
		for _, o := range tc.omit {
			if strings.Contains(got, o) {
				t.Errorf("diskText(%+v) = %q; shows %q", tc.d, got, o)
			}
		}
	}
}
