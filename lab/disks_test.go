package lab

import (
	"reflect"
	"strings"
	"testing"
)

// The mounts below the nodes' directory are found in a mountinfo table,
// with its octal escapes read back, deepest first (the order they must be
// taken down in); others are left alone.
func TestParseMountsBelow(t *testing.T) {
	table := strings.Join([]string{
		`22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw`,
		`40 22 0:35 / /run rw,nosuid shared:5 - tmpfs tmpfs rw`,
		`61 40 7:0 / /run/arschaos/nodes/n1 rw,relatime shared:30 - ext4 /dev/loop0 rw`,
		`62 40 7:1 / /run/arschaos/nodes/n1/deeper rw,relatime shared:31 - ext4 /dev/loop1 rw`,
		`63 40 7:2 / /run/arschaos/nodes-other/n3 rw,relatime shared:32 - ext4 /dev/loop2 rw`,
		`64 40 7:3 / /run/arschaos/nodes/with\040space rw,relatime shared:33 - ext4 /dev/loop3 rw`,
		`65 40 7:4 / /run/arschaos/nodes rw,relatime shared:34 - ext4 /dev/loop4 rw`,
		`short line`,
	}, "\n")
	got := parseMountsBelow(table, "/run/arschaos/nodes/")
	want := []string{"/run/arschaos/nodes/n1/deeper", "/run/arschaos/nodes/n1", "/run/arschaos/nodes/with space"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("mounts below the nodes' directory: %q; want %q", got, want)
	}
}

// A disk fault names a node of a lab whose nodes have disks of their own,
// and is refused otherwise, before anything is touched.
func TestDiskFaultsNeedNodeDisks(t *testing.T) {
	var l Lab
	for name, f := range map[string]func(string) error{
		"fill": l.FillNodeDisk, "free": l.FreeNodeDisk, "freeze": l.FreezeNodeDisk, "thaw": l.ThawNodeDisk,
	} {
		err := f("n1")
		if err == nil || !strings.Contains(err.Error(), "no disks of their own") {
			t.Errorf("%s on a lab without nodes: %v; want it refused for want of node disks", name, err)
		}
	}
}
