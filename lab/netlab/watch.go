package netlab

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// WatchService calls fn with whether an address-handover replica's service
// link holds the service address: once at the start, then whenever that
// changes, until ctx ends. It listens to the kernel's IPv4 address
// notifications of the replica's namespace and reads the link again on
// each (a notification is only a signal to look); lost notifications
// (ENOBUFS) make it look too. fn runs on the watcher's goroutine; a read
// that fails is passed as err (held false) and tried again at the next
// notification or after 100 ms.
func (l *Lab) WatchService(ctx context.Context, replica string, fn func(held bool, err error)) error {
	if !l.AddressHandover(replica) {
		return fmt.Errorf("netlab: %q is no address-handover replica", replica)
	}
	var s *nl.NetlinkSocket
	err := inNetns(filepath.Join(netnsDir, l.Namespace(replica)), func() error {
		var err error
		s, err = nl.Subscribe(unix.NETLINK_ROUTE, unix.RTNLGRP_IPV4_IFADDR)
		return err
	})
	if err != nil {
		return fmt.Errorf("netlab: watch %s: %w", replica, err)
	}
	// A bounded receive, so that the end of ctx is seen.
	tv := unix.NsecToTimeval(100e6)
	if err := s.SetReceiveTimeout(&tv); err != nil {
		s.Close()
		return fmt.Errorf("netlab: watch %s: %w", replica, err)
	}
	go func() {
		defer s.Close()
		var last *bool
		look := func() {
			held, err := l.HoldsService(replica)
			if err != nil {
				fn(false, err)
				last = nil
				return
			}
			if last == nil || *last != held {
				last = &held
				fn(held, nil)
			}
		}
		look()
		for ctx.Err() == nil {
			msgs, _, err := s.Receive()
			switch {
			case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EWOULDBLOCK) || errors.Is(err, unix.EINTR):
				if last == nil {
					look() // retry a failed read
				}
				continue
			case err != nil && !errors.Is(err, unix.ENOBUFS):
				if ctx.Err() == nil {
					fn(false, fmt.Errorf("netlab: watch %s: %w", replica, err))
				}
				return
			}
			if err == nil && len(msgs) == 0 {
				continue
			}
			look()
		}
	}()
	return nil
}

// SetAgentLink connects (up) or cuts off (down) an address-handover
// replica's (or a container agent's) management link (the hub side of its veth): cut off, no node
// reaches its replica agent, and the replica serves on. The chaos suite's
// agent-cut fault.
func (l *Lab) SetAgentLink(replica string, up bool) error {
	if k := slices.Index(l.t.ContainerAgents, replica); k >= 0 {
		return setLinkUp(filepath.Join(netnsDir, l.hubNS()), l.agentPort(k), up)
	}
	i := slices.Index(l.t.Replicas, replica)
	if i < 0 || !l.AddressHandover(replica) {
		return fmt.Errorf("netlab: %q is no address-handover replica", replica)
	}
	return setLinkUp(filepath.Join(netnsDir, l.hubNS()), l.mgmtPort(i), up)
}
