package apiserver

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/ars-project/ars/cluster"
)

func TestWireDiskCarriesOnlyMeasuredValues(t *testing.T) {
	if wireDisk(nil) != nil {
		t.Fatal("a node without a disk reading shows a disk")
	}
	at := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	d := wireDisk(&cluster.DiskStatus{Healthy: false, Cause: "probe failed: read-only file system",
		FreeKnown: false, ProbeLatency: 2 * time.Millisecond, CheckedAt: at, Since: at.Add(-time.Minute)})
	if d.Healthy || d.Cause == "" || d.FreeBytes != nil || d.ProbeSeconds != 0.002 ||
		d.CheckedAt != "2026-12-07T06:00:00Z" || d.Since != "2026-12-07T05:59:00Z" {
		t.Fatalf("wire disk = %+v", d)
	}
	d = wireDisk(&cluster.DiskStatus{Healthy: true, FreeKnown: true, FreeBytes: 12345, CheckedAt: at, Since: at})
	if !d.Healthy || d.FreeBytes == nil || *d.FreeBytes != 12345 || d.Cause != "" {
		t.Fatalf("wire disk = %+v", d)
	}
}

func TestStatusPageShowsAnUnhealthyDisk(t *testing.T) {
	at := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	st := cluster.Status{Node: "n1", State: "follower", Disk: &cluster.DiskStatus{
		Cause: "free space 0 bytes is below the minimum of 67108864 bytes", FreeKnown: true, FreeBytes: 4096, CheckedAt: at, Since: at}}
	var buf bytes.Buffer
	if err := statusPage.Execute(&buf, statusPageData{Status: wireStatus(st)}); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	for _, want := range []string{"unhealthy: free space 0 bytes is below the minimum", "4096 bytes free"} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
}
