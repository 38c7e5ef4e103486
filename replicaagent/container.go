package replicaagent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/ars-project/ars/replicaagent/ipaddr"
)

// ContainerEngine is what a Container needs of its container engine: the
// host process ID of a container's main process (0 when it does not run),
// refusing a container that is not the replica's. cmd/ars implements it
// on the Docker Engine API.
type ContainerEngine interface {
	Pid(ctx context.Context, container string) (int, error)
}

// ErrNotRunning: the replica's container has no running process, so it
// has no network namespace to act in.
var ErrNotRunning = errors.New("the container is not running")

// engineTimeout bounds one engine call of a Container.
const engineTimeout = 2 * time.Second

// Container is the Addresser of a container replica, run on its engine's
// host: it enters the container's network namespace from outside (the
// replica's image needs no tool and the replica process no capability)
// and acts there on the one link with an address in Subnet (the
// container's endpoint on the service network, whatever the engine named
// it). A container started again has a new namespace: the namespace
// entered last is kept (its netlink socket and packet socket open) for as
// long as the container's process still lives in it — one stat per
// command — and looked up again through the engine otherwise. A container
// that does not run, or has no link in Subnet (disconnected from the
// service network: its "NIC"), holds nothing and has no carrier. While
// it holds the service address, that is the preferred source of the
// link's routes, so that a server bound to the wildcard address (as
// container images usually are) answers from it; a release gives the
// routes their own source back before the address goes.
type Container struct {
	Name    string       // the container's name on its engine
	Subnet  netip.Prefix // the service network's subnet
	Address netip.Prefix // the service address, with its prefix length
	Engine  ContainerEngine
	// Proc is the proc file system's mount point ("" means /proc).
	Proc string

	mu  sync.Mutex
	pid int
	ns  *ipaddr.Namespace
	an  *ipaddr.Announcer
}

func (c *Container) nsPath(pid int) string {
	proc := c.Proc
	if proc == "" {
		proc = "/proc"
	}
	return proc + "/" + strconv.Itoa(pid) + "/ns/net"
}

// namespaceLocked is the container's current namespace and its
// announcer; c.mu is held, and the announcer may be used only while it is
// (a namespace found gone closes the announcer of the old one).
func (c *Container) namespaceLocked() (*ipaddr.Namespace, *ipaddr.Announcer, error) {
	if c.ns != nil {
		if ino, err := ipaddr.NamespaceInode(c.nsPath(c.pid)); err == nil && ino == c.ns.Inode() {
			return c.ns, c.an, nil
		}
		c.closeLocked()
	}
	ctx, cancel := context.WithTimeout(context.Background(), engineTimeout)
	defer cancel()
	pid, err := c.Engine.Pid(ctx, c.Name)
	if err != nil {
		return nil, nil, fmt.Errorf("container %s: %w", c.Name, err)
	}
	if pid <= 0 {
		return nil, nil, fmt.Errorf("container %s: %w", c.Name, ErrNotRunning)
	}
	ns, err := ipaddr.OpenNamespace(c.nsPath(pid))
	if err != nil {
		return nil, nil, fmt.Errorf("container %s: %w", c.Name, err)
	}
	an, err := ns.NewAnnouncer()
	if err != nil {
		ns.Close()
		return nil, nil, fmt.Errorf("container %s: %w", c.Name, err)
	}
	c.pid, c.ns, c.an = pid, ns, an
	return ns, an, nil
}

// onLink runs fn with the service link in the container's namespace (nil
// when the container does not run or has no link in Subnet) and its
// announcer, under c.mu for the whole call: the link's netlink socket and
// the announcer are never used after another call found the namespace
// gone and closed them (the lab reads and claims from several
// goroutines at once; the agent makes one call at a time).
func (c *Container) onLink(fn func(k *ipaddr.Link, an *ipaddr.Announcer) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	ns, an, err := c.namespaceLocked()
	if errors.Is(err, ErrNotRunning) {
		return fn(nil, nil)
	}
	if err != nil {
		return err
	}
	k, err := ns.BySubnet(c.Subnet)
	if errors.Is(err, ipaddr.ErrNoLink) {
		return fn(nil, nil)
	}
	if err != nil {
		return err
	}
	return fn(k, an)
}

func (c *Container) noLink() error {
	return fmt.Errorf("container %s has no link in %s (not running, or not on the service network)", c.Name, c.Subnet)
}

func (c *Container) Held() (held bool, err error) {
	err = c.onLink(func(k *ipaddr.Link, _ *ipaddr.Announcer) (err error) {
		if k != nil {
			held, err = k.Has(c.Address.Addr())
		}
		return err
	})
	return held, err
}

func (c *Container) Carrier() (up bool, err error) {
	err = c.onLink(func(k *ipaddr.Link, _ *ipaddr.Announcer) error {
		up = k != nil && k.Carrier()
		return nil
	})
	return up, err
}

func (c *Container) Claim() (added bool, err error) {
	err = c.onLink(func(k *ipaddr.Link, _ *ipaddr.Announcer) (err error) {
		if k == nil {
			return c.noLink()
		}
		if added, err = k.Put(c.Address); err != nil {
			return err
		}
		// A server bound to the wildcard address answers from the
		// routes' preferred source: the service address while it is
		// held.
		return k.SourceRoutes(c.Address.Addr())
	})
	return added, err
}

// Announce sends one frame at a time, each in a call of its own (the
// lock is not held across the gaps).
func (c *Container) Announce(n int, gap time.Duration) error {
	for i := range n {
		if i > 0 {
			time.Sleep(gap)
		}
		err := c.onLink(func(k *ipaddr.Link, an *ipaddr.Announcer) error {
			if k == nil {
				return c.noLink()
			}
			return an.Announce(k, c.Address.Addr(), 1, 0)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Release takes the address off; a container that does not run, or has
// no service link, holds nothing to release.
func (c *Container) Release() (removed bool, err error) {
	err = c.onLink(func(k *ipaddr.Link, _ *ipaddr.Announcer) (err error) {
		if k == nil {
			return nil
		}
		// The kernel drops the routes whose source goes away: give them
		// back their own source first.
		if err = k.UnsourceRoutes(c.Address.Addr()); err != nil {
			return err
		}
		removed, err = k.Remove(c.Address.Addr())
		return err
	})
	return removed, err
}

// LinkName says which link the agent acts on (see LinkNamer).
func (c *Container) LinkName() string {
	return fmt.Sprintf("%s's link in %s", c.Name, c.Subnet)
}

// Close closes the namespace entered last.
func (c *Container) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeLocked()
	return nil
}

func (c *Container) closeLocked() {
	if c.an != nil {
		// Closing a packet socket waits for the kernel's grace period;
		// the command that found the namespace gone does not.
		go c.an.Close()
	}
	if c.ns != nil {
		c.ns.Close()
	}
	c.pid, c.ns, c.an = 0, nil, nil
}
