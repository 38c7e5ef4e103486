// Command ars-nethelper puts a container replica's service address in
// place from beside it: the Docker driver (controller/docker) runs it in a
// helper container that shares the replica's network namespace
// (NetworkMode container:<replica>) with only the NET_ADMIN and NET_RAW
// capabilities, so that two replicas on one engine can hold the service
// address at once during a make-before-break switch. The engine gives an
// address to one endpoint per subnet only; the replica is therefore
// connected under an address of its own and the service address is added
// here, outside the engine's allocator. See controller/docker/DESIGN.md.
//
// It is built statically and imported as a one-file image (`make images`,
// images/build.sh), so it needs no base image: nothing from the replica's
// filesystem ever runs with these capabilities.
//
// Subcommands:
//
//	ars-nethelper serve [-subnet PREFIX -addr IP [-port P]]
//	    The helper container's main process (its PID 1: it reaps
//	    children) until SIGTERM or SIGINT. Without arguments it only
//	    waits. Armed with -subnet and -addr it keeps IP on the replica's
//	    service link: it listens to the kernel's link, address and route
//	    notifications and, whenever the one link with an address in PREFIX
//	    is up, does what add does (IP/32 on it, IP the source of its routes,
//	    two gratuitous ARPs when it put the address there or the link is
//	    new); a link that goes away is forgotten. Each address it puts in
//	    place is a line "IP on LINK (index N)" on standard output.
//	ars-nethelper add -subnet PREFIX -addr IP [-port P] [-garp N] [-gap D]
//	    Adds IP/32 to the one link that has an IPv4 address in PREFIX (the
//	    replica's service-network link), makes IP the preferred source of
//	    that link's routes (so a server bound to the wildcard answers from
//	    it), and sends N gratuitous ARPs (default 2) D apart (default
//	    10 ms). Adding an address already there succeeds.
//	ars-nethelper show
//	    Prints every link's IPv4 addresses, one link a line.
//
// With -port (the service's UDP port), the gratuitous ARPs wait until a
// UDP socket of the namespace is bound to IP (or a wildcard address) on
// that port, at most 300 ms (see waitServed): a server that binds each
// address on its own is then listening before clients are moved to it.
//
// Exit status: 0 on success, 1 when the change failed (the reason on
// standard error), 2 on bad usage.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  ars-nethelper serve [-subnet PREFIX -addr IP [-port PORT]]
  ars-nethelper add -subnet PREFIX -addr IP [-port PORT] [-garp N] [-gap DURATION]
  ars-nethelper show`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		fs.SetOutput(stderr)
		subnet := fs.String("subnet", "", "the service network's subnet (finds the link); with -addr, arms the helper")
		addr := fs.String("addr", "", "the service address to keep on the service link")
		port := fs.Uint("port", 0, "the service's UDP port: announce once it is served on the address (0: at once)")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		if fs.NArg() > 0 {
			fmt.Fprintf(stderr, "ars-nethelper serve: unexpected argument %q\n", fs.Arg(0))
			return 2
		}
		if *subnet == "" && *addr == "" {
			serve(nil)
			return 0
		}
		p, a, err := parseAdd(*subnet, *addr, *port, 2, 10*time.Millisecond)
		if err != nil {
			fmt.Fprintf(stderr, "ars-nethelper serve: %v\n", err)
			return 2
		}
		k, err := newKeeper(p, a, uint16(*port), stdout, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "ars-nethelper serve: %v\n", err)
			return 1
		}
		serve(k)
		return 0
	case "add":
		fs := flag.NewFlagSet("add", flag.ContinueOnError)
		fs.SetOutput(stderr)
		subnet := fs.String("subnet", "", "the service network's subnet (finds the link)")
		addr := fs.String("addr", "", "the service address to add")
		port := fs.Uint("port", 0, "the service's UDP port: announce once it is served on the address (0: at once)")
		garps := fs.Int("garp", 2, "gratuitous ARPs to send")
		gap := fs.Duration("gap", 10*time.Millisecond, "pause between gratuitous ARPs")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		p, a, err := parseAdd(*subnet, *addr, *port, *garps, *gap)
		if err != nil {
			fmt.Fprintf(stderr, "ars-nethelper add: %v\n", err)
			return 2
		}
		dev, err := add(p, a, uint16(*port), *garps, *gap)
		if err != nil {
			fmt.Fprintf(stderr, "ars-nethelper add %s: %v\n", a, err)
			return 1
		}
		fmt.Fprintf(stdout, "%s on %s\n", a, dev)
		return 0
	case "show":
		if err := show(stdout); err != nil {
			fmt.Fprintf(stderr, "ars-nethelper show: %v\n", err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "ars-nethelper: unknown subcommand %q\n%s\n", args[0], usage)
	return 2
}

// parseAdd checks add's arguments before anything is changed.
func parseAdd(subnet, addr string, port uint, garps int, gap time.Duration) (netip.Prefix, netip.Addr, error) {
	p, err := netip.ParsePrefix(subnet)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, netip.Addr{}, fmt.Errorf("-subnet %q is not an IPv4 prefix", subnet)
	}
	a, err := netip.ParseAddr(addr)
	if err != nil || !a.Is4() {
		return netip.Prefix{}, netip.Addr{}, fmt.Errorf("-addr %q is not an IPv4 address", addr)
	}
	p = p.Masked()
	if !p.Contains(a) {
		return netip.Prefix{}, netip.Addr{}, fmt.Errorf("-addr %s is not in -subnet %s", a, p)
	}
	if port > 65535 {
		return netip.Prefix{}, netip.Addr{}, fmt.Errorf("-port %d is not a port (0..65535)", port)
	}
	if garps < 0 || garps > 10 || gap < 0 || gap > time.Second {
		return netip.Prefix{}, netip.Addr{}, errors.New("-garp must be 0..10 and -gap 0..1s")
	}
	return p, a, nil
}

// serve waits for the end, reaping whatever is left to it as PID 1; an
// armed helper's keeper (k, may be nil) runs meanwhile.
func serve(k *keeper) {
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	if k != nil {
		go k.run()
	}
	for s := range sig {
		if s != syscall.SIGCHLD {
			return
		}
		for {
			var ws unix.WaitStatus
			if pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}

// errNoLink: no link has an address in the subnet (the container is not
// on the service network).
var errNoLink = errors.New("no link has an address in the subnet")

// serviceLink is the one link with an IPv4 address in p.
func serviceLink(p netip.Prefix) (netlink.Link, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var found []netlink.Link
	for _, l := range links {
		addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
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
		return nil, fmt.Errorf("%w %s (the container is not on the service network)", errNoLink, p)
	case 1:
		return found[0], nil
	}
	var names []string
	for _, l := range found {
		names = append(names, l.Attrs().Name)
	}
	return nil, fmt.Errorf("%d links have an address in %s (%s); cannot tell which is the service link", len(found), p, strings.Join(names, ", "))
}

// add puts a on the service link, makes it the source of the link's
// routes and announces it once it is served on port (see waitServed). It
// returns the link's name.
func add(p netip.Prefix, a netip.Addr, port uint16, garps int, gap time.Duration) (string, error) {
	link, err := serviceLink(p)
	if err != nil {
		return "", err
	}
	name := link.Attrs().Name
	if _, err := putAddr(link, a); err != nil {
		return name, err
	}
	if err := sourceRoutes(link, a); err != nil {
		return name, err
	}
	waitServed(a, port, DefaultServeWait)
	if err := announce(link, a, garps, gap); err != nil {
		return name, err
	}
	return name, nil
}

// putAddr adds a/32 to link unless a is on it already (with any prefix
// length); added says whether it did.
func putAddr(link netlink.Link, a netip.Addr) (added bool, err error) {
	name := link.Attrs().Name
	ip := net.IP(a.AsSlice())
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return false, fmt.Errorf("list addresses of %s: %w", name, err)
	}
	for _, x := range addrs {
		if x.IP.Equal(ip) {
			return false, nil
		}
	}
	err = netlink.AddrAdd(link, &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(32, 32)}})
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return false, fmt.Errorf("add %s/32 to %s: %w", a, name, err)
	}
	return err == nil, nil
}

// sourceRoutes makes a the preferred source of link's routes in the main
// table. A server bound to the wildcard address answers from the route's
// preferred source; without this it would be the replica's own address,
// and clients drop answers from an address they did not ask.
func sourceRoutes(link netlink.Link, a netip.Addr) error {
	name := link.Attrs().Name
	ip := net.IP(a.AsSlice())
	routes, err := netlink.RouteList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list routes of %s: %w", name, err)
	}
	for _, r := range routes {
		if r.Table != unix.RT_TABLE_MAIN || r.Src.Equal(ip) {
			continue
		}
		r.Src = ip
		if err := netlink.RouteReplace(&r); err != nil {
			return fmt.Errorf("make %s the source of route %s on %s: %w", a, r.Dst, name, err)
		}
	}
	return nil
}

// announce sends n gratuitous ARPs for a from link, gap apart: ARP
// requests whose sender and target address are both a, which Linux
// neighbours accept as an override of an existing entry whatever its
// age.
func announce(link netlink.Link, a netip.Addr, n int, gap time.Duration) error {
	if n == 0 {
		return nil
	}
	mac := link.Attrs().HardwareAddr
	if len(mac) != 6 {
		return fmt.Errorf("%s has no Ethernet address", link.Attrs().Name)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP)))
	if err != nil {
		return fmt.Errorf("packet socket (needs NET_RAW): %w", err)
	}
	defer unix.Close(fd)
	// Straight to the driver, past a queueing discipline that may not be
	// active yet on a link that just came up.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
		return fmt.Errorf("PACKET_QDISC_BYPASS: %w", err)
	}
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: link.Attrs().Index, Halen: 6,
		Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	frame := garp(mac, a)
	for i := range n {
		if i > 0 {
			time.Sleep(gap)
		}
		if err := unix.Sendto(fd, frame, 0, to); err != nil {
			return fmt.Errorf("send gratuitous ARP on %s: %w", link.Attrs().Name, err)
		}
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// garp is the ARP payload announcing a at mac.
func garp(mac net.HardwareAddr, a netip.Addr) []byte {
	b := make([]byte, 28)
	b[0], b[1] = 0, 1       // hardware: Ethernet
	b[2], b[3] = 0x08, 0x00 // protocol: IPv4
	b[4], b[5] = 6, 4       // address lengths
	b[6], b[7] = 0, 1       // request
	copy(b[8:14], mac)
	ip4 := a.As4()
	copy(b[14:18], ip4[:]) // sender address
	copy(b[24:28], ip4[:]) // target address (target MAC stays zero)
	return b
}

// show prints each link's IPv4 addresses: "eth1 172.31.250.130/24 172.31.250.3/32".
func show(w io.Writer) error {
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			return fmt.Errorf("list addresses of %s: %w", l.Attrs().Name, err)
		}
		fields := []string{l.Attrs().Name}
		for _, a := range addrs {
			fields = append(fields, a.IPNet.String())
		}
		fmt.Fprintln(w, strings.Join(fields, " "))
	}
	return nil
}
