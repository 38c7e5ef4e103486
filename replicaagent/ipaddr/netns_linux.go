//go:build linux

package ipaddr

import (
	"fmt"
	"net/netip"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Namespace is another network namespace than the caller's, entered
// through a file that names it (/proc/PID/ns/net of a process in it):
// its links are found and changed through a netlink socket opened in it,
// and its Announcer sends from a packet socket opened in it. The open
// file keeps the namespace alive until Close, so its Inode is not given
// to another namespace meanwhile.
type Namespace struct {
	ns    netns.NsHandle
	h     *netlink.Handle
	inode uint64
}

// OpenNamespace opens the network namespace that path names.
func OpenNamespace(path string) (*Namespace, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(ns), &st); err != nil {
		ns.Close()
		return nil, fmt.Errorf("stat network namespace %s: %w", path, err)
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("netlink socket in network namespace %s: %w", path, err)
	}
	return &Namespace{ns: ns, h: h, inode: st.Ino}, nil
}

// NamespaceInode is the inode of the namespace path names now (two
// processes in one namespace give the same): how a holder of a Namespace
// tells whether a process still lives in it.
func NamespaceInode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("stat %s: %w", path, err)
	}
	return st.Ino, nil
}

// Inode identifies the namespace (see NamespaceInode).
func (n *Namespace) Inode() uint64 { return n.inode }

// ByName finds the link called name in the namespace.
func (n *Namespace) ByName(name string) (*Link, error) { return byName(n.h, name) }

// BySubnet finds the namespace's one link with an IPv4 address in p.
func (n *Namespace) BySubnet(p netip.Prefix) (*Link, error) { return bySubnet(n.h, p) }

// NewAnnouncer opens an Announcer in the namespace: the calling thread
// enters it for the socket call and returns to its own namespace. A
// thread that cannot return stays locked, so the runtime retires it
// rather than run other goroutines in the wrong namespace.
func (n *Namespace) NewAnnouncer() (*Announcer, error) {
	runtime.LockOSThread()
	self, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("read this thread's network namespace: %w", err)
	}
	defer self.Close()
	if err := netns.Set(n.ns); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("enter network namespace: %w", err)
	}
	a, aerr := NewAnnouncer()
	if err := netns.Set(self); err != nil {
		if a != nil {
			a.Close()
		}
		return nil, fmt.Errorf("return to this thread's network namespace: %w", err) // thread stays locked
	}
	runtime.UnlockOSThread()
	return a, aerr
}

// Close closes the namespace's netlink socket and file.
func (n *Namespace) Close() error {
	n.h.Close()
	return n.ns.Close()
}
