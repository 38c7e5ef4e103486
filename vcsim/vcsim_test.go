package vcsim

import (
	"context"
	"testing"
	"time"

	"github.com/vmware/govmomi/find"
)

// VMsPerHost sizes the inventory: the lab needs one VM per VM replica.
func TestVMsPerHost(t *testing.T) {
	for _, c := range []struct{ per, want int }{{0, 4}, {3, 6}} {
		s, err := Start(Options{VMsPerHost: c.per})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		f := find.NewFinder(s.Local(), true)
		dc, err := f.DefaultDatacenter(ctx)
		if err != nil {
			t.Fatal(err)
		}
		f.SetDatacenter(dc)
		vms, err := f.VirtualMachineList(ctx, "*")
		cancel()
		s.Close()
		if err != nil || len(vms) != c.want {
			t.Fatalf("VMsPerHost %d: %d VMs (%v), want %d", c.per, len(vms), err, c.want)
		}
	}
}
