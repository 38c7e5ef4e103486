//go:build linux

package ipaddr

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Link is one network link, as found by ByName or BySubnet (of the
// current namespace) or a Namespace's.
type Link struct {
	Name string
	link netlink.Link
	h    *netlink.Handle
}

// current is the netlink handle of the calling thread's namespace (the
// zero Handle opens a socket per request, as the package functions do).
var current = &netlink.Handle{}

// ByName finds the link called name.
func ByName(name string) (*Link, error) { return byName(current, name) }

// BySubnet finds the one link with an IPv4 address in p. None is
// ErrNoLink; several are an error naming them.
func BySubnet(p netip.Prefix) (*Link, error) { return bySubnet(current, p) }

func byName(h *netlink.Handle, name string) (*Link, error) {
	l, err := h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("%w: %s", ErrNoLink, name)
		}
		return nil, fmt.Errorf("find link %s: %w", name, err)
	}
	return &Link{Name: name, link: l, h: h}, nil
}

func bySubnet(h *netlink.Handle, p netip.Prefix) (*Link, error) {
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var found []netlink.Link
	for _, l := range links {
		addrs, err := h.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			return nil, fmt.Errorf("list addresses of %s: %w", l.Attrs().Name, err)
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && p.Contains(ip) {
				found = append(found, l)
				break
			}
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("%w: no link has an address in %s", ErrNoLink, p)
	case 1:
		return &Link{Name: found[0].Attrs().Name, link: found[0], h: h}, nil
	}
	var names []string
	for _, l := range found {
		names = append(names, l.Attrs().Name)
	}
	return nil, fmt.Errorf("%d links have an address in %s (%s); cannot tell which is the service link", len(found), p, strings.Join(names, ", "))
}

// Index is the link's interface index.
func (l *Link) Index() int { return l.link.Attrs().Index }

// Up says whether the link is administratively up and not operationally
// down.
func (l *Link) Up() bool {
	a := l.link.Attrs()
	return a.Flags&net.FlagUp != 0 && a.OperState != netlink.OperDown
}

// Carrier says whether the link can carry traffic now: administratively
// up and operationally up (or unknown, as links without a carrier notion
// report). A VM's NIC disconnected by its hypervisor, or a veth whose
// peer is down, has none.
func (l *Link) Carrier() bool {
	a := l.link.Attrs()
	return a.Flags&net.FlagUp != 0 && (a.OperState == netlink.OperUp || a.OperState == netlink.OperUnknown)
}

func checkV4(a netip.Addr) error {
	if !a.Is4() {
		if a.Is6() {
			return fmt.Errorf("%s: %w", a, ErrIPv6)
		}
		return fmt.Errorf("%q is not an IP address", a)
	}
	return nil
}

// Addrs lists the link's IPv4 addresses.
func (l *Link) Addrs() ([]netip.Prefix, error) {
	addrs, err := l.h.AddrList(l.link, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", l.Name, err)
	}
	var out []netip.Prefix
	for _, x := range addrs {
		ip, ok := netip.AddrFromSlice(x.IP.To4())
		if !ok {
			continue
		}
		bits, _ := x.Mask.Size()
		out = append(out, netip.PrefixFrom(ip, bits))
	}
	return out, nil
}

// Has reports whether a is on the link (with any prefix length).
func (l *Link) Has(a netip.Addr) (bool, error) {
	if err := checkV4(a); err != nil {
		return false, err
	}
	addrs, err := l.Addrs()
	if err != nil {
		return false, err
	}
	for _, x := range addrs {
		if x.Addr() == a {
			return true, nil
		}
	}
	return false, nil
}

// Put adds p's address with p's length to the link unless the address
// is on it already (with any length); added says whether it did.
func (l *Link) Put(p netip.Prefix) (added bool, err error) {
	a := p.Addr()
	if err := checkV4(a); err != nil {
		return false, err
	}
	has, err := l.Has(a)
	if err != nil || has {
		return false, err
	}
	ip := net.IP(a.AsSlice())
	err = l.h.AddrAdd(l.link, &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(p.Bits(), 32)}})
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return false, fmt.Errorf("add %s to %s: %w", p, l.Name, err)
	}
	return err == nil, nil
}

// Remove takes every entry of a off the link; removed says whether one
// was there.
func (l *Link) Remove(a netip.Addr) (removed bool, err error) {
	if err := checkV4(a); err != nil {
		return false, err
	}
	addrs, err := l.h.AddrList(l.link, netlink.FAMILY_V4)
	if err != nil {
		return false, fmt.Errorf("list addresses of %s: %w", l.Name, err)
	}
	ip := net.IP(a.AsSlice())
	for i := range addrs {
		if !addrs[i].IP.Equal(ip) {
			continue
		}
		if err := l.h.AddrDel(l.link, &addrs[i]); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return removed, fmt.Errorf("remove %s from %s: %w", addrs[i].IPNet, l.Name, err)
		}
		removed = true
	}
	return removed, nil
}

// SourceRoutes makes a the preferred source of the link's routes in the
// main table. A server bound to the wildcard address answers from the
// route's preferred source; without this it would be the link's own
// address, and clients drop answers from an address they did not ask.
// The kernel removes routes whose preferred source goes away, so a holder
// that gives the address up calls UnsourceRoutes first.
func (l *Link) SourceRoutes(a netip.Addr) error { return l.resource(a, true) }

// UnsourceRoutes undoes SourceRoutes before a goes away: the link's
// routes in the main table whose preferred source is a lose it (the
// kernel picks the link's own address again), so that taking a off does
// not take the routes with it.
func (l *Link) UnsourceRoutes(a netip.Addr) error { return l.resource(a, false) }

// resource gives the link's main-table routes a as their preferred source
// (set) or takes a away from those that have it.
func (l *Link) resource(a netip.Addr, set bool) error {
	if err := checkV4(a); err != nil {
		return err
	}
	ip := net.IP(a.AsSlice())
	routes, err := l.h.RouteList(l.link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list routes of %s: %w", l.Name, err)
	}
	for _, r := range routes {
		if r.Table != unix.RT_TABLE_MAIN || r.Src.Equal(ip) != !set {
			continue
		}
		what := "make %s the source of route %s on %s: %w"
		r.Src = ip
		if !set {
			what, r.Src = "drop %s as the source of route %s on %s: %w", nil
		}
		if err := l.h.RouteReplace(&r); err != nil {
			return fmt.Errorf(what, a, r.Dst, l.Name, err)
		}
	}
	return nil
}

// Announcer sends gratuitous ARPs through one packet socket kept open.
// Closing a packet socket waits for an RCU grace period (8-16 ms measured
// in the lab), which a claim on a switch's critical path must not pay:
// the replica agent keeps one Announcer for its life. A packet socket
// belongs to the network namespace it was opened in, so an Announcer
// serves the links of that namespace only. Opened with protocol 0 it
// receives nothing; each frame names its link and protocol.
type Announcer struct{ fd int }

// NewAnnouncer opens the socket in the calling thread's namespace.
func NewAnnouncer() (*Announcer, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("packet socket (needs NET_RAW): %w", err)
	}
	// Straight to the driver, past a queueing discipline that may not be
	// active yet on a link that just came up.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("PACKET_QDISC_BYPASS: %w", err)
	}
	return &Announcer{fd: fd}, nil
}

// Close closes the socket (and waits for the kernel's grace period).
func (a *Announcer) Close() error { return unix.Close(a.fd) }

// Announce sends n gratuitous ARPs for addr from the link, gap apart.
func (a *Announcer) Announce(l *Link, addr netip.Addr, n int, gap time.Duration) error {
	if err := checkV4(addr); err != nil {
		return err
	}
	mac := l.link.Attrs().HardwareAddr
	if len(mac) != 6 {
		return fmt.Errorf("%s has no Ethernet address", l.Name)
	}
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: l.Index(), Halen: 6,
		Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	frame := GARPFrame(mac, addr)
	for i := range n {
		if i > 0 {
			time.Sleep(gap)
		}
		if err := sendRetrying(a.fd, frame, to); err != nil {
			return fmt.Errorf("send gratuitous ARP on %s: %w", l.Name, err)
		}
	}
	return nil
}

// Announce sends n gratuitous ARPs for a from the link, gap apart (see
// GARPFrame), through a packet socket of its own (see Announcer for one
// that stays open).
func (l *Link) Announce(a netip.Addr, n int, gap time.Duration) error {
	if err := checkV4(a); err != nil {
		return err
	}
	if n <= 0 {
		return nil
	}
	an, err := NewAnnouncer()
	if err != nil {
		return err
	}
	defer an.Close()
	return an.Announce(l, a, n, gap)
}

// sendRetrying sends frame, again after a short pause while the driver
// says its queue is full (ENOBUFS: a frame past the queueing discipline
// meets the device's own queue; a veth whose peer has not drained yet
// refuses it), at most 5 times over about 3 ms.
func sendRetrying(fd int, frame []byte, to unix.Sockaddr) error {
	pause := 100 * time.Microsecond
	for try := 0; ; try++ {
		err := unix.Sendto(fd, frame, 0, to)
		if !errors.Is(err, unix.ENOBUFS) || try == 4 {
			return err
		}
		time.Sleep(pause)
		pause *= 2
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
