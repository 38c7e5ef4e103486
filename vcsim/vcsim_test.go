package vcsim

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/vmware/govmomi"
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

// Hold keeps one user's calls waiting until Release; another user's calls
// and the in-process client's pass, and Logout is never held.
func TestHoldOneUser(t *testing.T) {
	s, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	login := func(user string) *govmomi.Client {
		u, err := url.Parse(s.URL())
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.UserPassword(user, "pw")
		c, err := govmomi.NewClient(ctx, u, true)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	held, other := login("held"), login("other")
	s.Hold("held")
	done := make(chan error, 1)
	go func() {
		_, err := find.NewFinder(held.Client, true).DefaultDatacenter(ctx)
		done <- err
	}()
	for len(s.Held()) == 0 {
		select {
		case err := <-done:
			t.Fatalf("the held user's call returned: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	if _, err := find.NewFinder(other.Client, true).DefaultDatacenter(ctx); err != nil {
		t.Fatalf("another user's call: %v", err)
	}
	if _, err := find.NewFinder(s.Local(), true).DefaultDatacenter(ctx); err != nil {
		t.Fatalf("the in-process client's call: %v", err)
	}
	select {
	case err := <-done:
		t.Fatalf("the held call returned before Release: %v", err)
	default:
	}
	s.Release()
	if err := <-done; err != nil {
		t.Fatalf("the held call after Release: %v", err)
	}
	if n := len(s.Held()); n != 0 {
		t.Fatalf("%d methods still held after Release", n)
	}
	s.Hold("held")
	if err := held.Logout(ctx); err != nil {
		t.Fatalf("logout while held: %v", err)
	}
	s.Release()
	_ = other.Logout(ctx)
}
