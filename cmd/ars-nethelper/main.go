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
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ars-project/ars/replicaagent/ipaddr"
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

// add puts a on the service link, makes it the source of the link's
// routes and announces it once it is served on port (see waitServed). It
// returns the link's name.
func add(p netip.Prefix, a netip.Addr, port uint16, garps int, gap time.Duration) (string, error) {
	link, err := ipaddr.BySubnet(p)
	if err != nil {
		return "", err
	}
	if _, err := link.Put(netip.PrefixFrom(a, 32)); err != nil {
		return link.Name, err
	}
	if err := link.SourceRoutes(a); err != nil {
		return link.Name, err
	}
	waitServed(a, port, DefaultServeWait)
	if err := link.Announce(a, garps, gap); err != nil {
		return link.Name, err
	}
	return link.Name, nil
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
