package main

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/ars-project/ars/replicaagent/ipaddr"
)

// keeper is an armed helper's work: it keeps the service address a on
// the one link with an address in p whenever there is one and it is up.
//
// What it trusts. The replica shares this network namespace and may be
// taken over by an exploit, so nothing it can write may steer the helper
// beyond what it could do itself. The subnet and the address come from
// the helper's command line, which only the Engine API sets (at the
// helper's creation). The kernel's notifications are only a signal to
// look again: the keeper reads the links, addresses and routes from the
// kernel every time, and a notification not sent by the kernel (sender
// port id other than 0) is ignored — and one process cannot send another
// a rtnetlink message anyway without NET_ADMIN, which the replica does not
// have. Without NET_ADMIN the replica cannot create, address, raise or
// remove a link either, so the state the keeper acts on is the engine's
// (the link the connect made and the disconnect removes).
type keeper struct {
	p         netip.Prefix
	a         netip.Addr
	port      uint16 // the service's UDP port (0: not known)
	sock      *nl.NetlinkSocket
	out, errw io.Writer
	// announced is the index of the link the address was last announced
	// on (0: none, or that link went away).
	announced int
	// lastErr is the last failure written to errw (written once).
	lastErr string
}

// newKeeper subscribes to the kernel's link, IPv4 address and IPv4 route
// notifications of this network namespace.
func newKeeper(p netip.Prefix, a netip.Addr, port uint16, out, errw io.Writer) (*keeper, error) {
	s, err := nl.Subscribe(unix.NETLINK_ROUTE, unix.RTNLGRP_LINK, unix.RTNLGRP_IPV4_IFADDR, unix.RTNLGRP_IPV4_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("subscribe to the kernel's link and address notifications: %w", err)
	}
	return &keeper{p: p, a: a, port: port, sock: s, out: out, errw: errw}, nil
}

// run looks once (the link may be there already: a helper made after its
// replica was connected), then again after every batch of notifications.
// Subscribing before the first look means no change falls between them.
func (k *keeper) run() {
	k.keep()
	for {
		_, from, err := k.sock.Receive()
		switch {
		case errors.Is(err, unix.ENOBUFS):
			// Notifications were dropped: look, since one may be lost.
		case errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN):
			continue
		case err != nil:
			k.report(fmt.Errorf("receive notifications: %w", err))
			time.Sleep(100 * time.Millisecond)
			continue
		case from.Pid != 0:
			continue // not from the kernel
		}
		k.keep()
	}
}

// keep puts the address in place if the service link is there and up,
// and announces it on a link it was not yet announced on.
func (k *keeper) keep() {
	link, err := ipaddr.BySubnet(k.p)
	if errors.Is(err, ipaddr.ErrNoLink) {
		k.announced, k.lastErr = 0, ""
		return
	}
	if err != nil {
		k.report(err)
		return
	}
	if !link.Up() {
		return // its up notification brings the keeper back
	}
	added, err := link.Put(netip.PrefixFrom(k.a, 32))
	if err != nil {
		k.report(err)
		return
	}
	if err := link.SourceRoutes(k.a); err != nil {
		k.report(err)
		return
	}
	if !added && k.announced == link.Index() {
		return
	}
	waitServed(k.a, k.port, DefaultServeWait)
	if err := link.Announce(k.a, 2, 10*time.Millisecond); err != nil {
		k.report(err)
		return
	}
	k.announced, k.lastErr = link.Index(), ""
	fmt.Fprintf(k.out, "%s on %s (index %d)\n", k.a, link.Name, link.Index())
}

func (k *keeper) report(err error) {
	if msg := err.Error(); msg != k.lastErr {
		k.lastErr = msg
		fmt.Fprintf(k.errw, "ars-nethelper serve: %s\n", msg)
	}
}
