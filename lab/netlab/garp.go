package netlab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ars-project/ars/replicaagent/ipaddr"
)

// announce sends the replica's gratuitous ARPs for the service address.
func (l *Lab) announce(ctx context.Context, replica string, mode GARPMode) error {
	switch mode {
	case GARPNone:
		return nil
	case GARPArping:
		// arping sends one request per second; -c 1 sends one. It is run
		// once per announcement; the later ones go in the background.
		run := func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, "ip", "netns", "exec", l.Namespace(replica),
				"arping", "-q", "-U", "-c", "1", "-I", l.ServiceDev(), l.ReplicaAddr(replica).String()).CombinedOutput()
			if err != nil {
				return fmt.Errorf("netlab: arping in %s: %w: %s", replica, err, out)
			}
			return nil
		}
		if err := run(ctx); err != nil {
			return err
		}
		l.background(func() {
			for i := 1; i < l.t.GARPCount; i++ {
				time.Sleep(l.t.GARPGap)
				_ = run(context.Background())
			}
		})
		return nil
	case GARPPacket:
		return l.announcePacket(filepath.Join(netnsDir, l.Namespace(replica)), l.ServiceDev(), l.ReplicaAddr(replica))
	}
	return fmt.Errorf("netlab: unknown GARP mode %d", mode)
}

// announcePacket sends the first gratuitous ARP for addr on dev in the
// namespace at nsPath, and the rest (GARPCount, GARPGap) in the
// background.
func (l *Lab) announcePacket(nsPath, dev string, addr netip.Addr) error {
	s, err := openGARP(nsPath, dev, addr)
	if err != nil {
		return err
	}
	if err := s.send(); err != nil {
		s.close()
		return err
	}
	l.background(func() {
		defer s.close()
		for i := 1; i < l.t.GARPCount; i++ {
			time.Sleep(l.t.GARPGap)
			_ = s.send()
		}
	})
	return nil
}

// background runs fn in a goroutine that Down waits for.
func (l *Lab) background(fn func()) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		fn()
	}()
}

// garpSocket is an AF_PACKET socket in a replica's namespace, bound to its
// service link, with one gratuitous ARP ready to send.
type garpSocket struct {
	fd    int
	to    unix.SockaddrLinklayer
	frame []byte
}

// htons converts a 16-bit value to network byte order, as AF_PACKET wants
// its protocol numbers.
func htons(v uint16) uint16 { return v<<8 | v>>8 }

// openGARP opens the socket inside the namespace at nsPath (the socket
// stays in that namespace) and builds the announcement of addr from dev.
func openGARP(nsPath, dev string, addr netip.Addr) (*garpSocket, error) {
	s := &garpSocket{fd: -1}
	err := inNetns(nsPath, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return fmt.Errorf("netlab: %s: %w", dev, err)
		}
		if len(ifi.HardwareAddr) != 6 {
			return fmt.Errorf("netlab: %s has no Ethernet address", dev)
		}
		// SOCK_DGRAM: the kernel writes the Ethernet header from the
		// destination below and the link's own address.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP)))
		if err != nil {
			return fmt.Errorf("netlab: packet socket: %w", err)
		}
		s.fd = fd
		// Straight to the driver: right after the link comes up its
		// queueing discipline may still be the no-op one that drops
		// everything, until the kernel's link watcher activates it.
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
			return fmt.Errorf("netlab: PACKET_QDISC_BYPASS: %w", err)
		}
		s.to = unix.SockaddrLinklayer{
			Protocol: htons(unix.ETH_P_ARP),
			Ifindex:  ifi.Index,
			Halen:    6,
			Addr:     [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		}
		s.frame = ipaddr.GARPFrame(ifi.HardwareAddr, addr)
		return nil
	})
	if err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *garpSocket) send() error {
	if err := unix.Sendto(s.fd, s.frame, 0, &s.to); err != nil {
		return fmt.Errorf("netlab: sending gratuitous ARP: %w", err)
	}
	return nil
}

func (s *garpSocket) close() {
	if s.fd >= 0 {
		unix.Close(s.fd)
		s.fd = -1
	}
}
