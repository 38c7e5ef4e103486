//go:build !linux

package ipaddr

import (
	"net/netip"
	"time"
)

// Link is a network link (see the Linux implementation).
type Link struct{ Name string }

func ByName(name string) (*Link, error)           { return nil, ErrUnsupportedOS }
func BySubnet(p netip.Prefix) (*Link, error)      { return nil, ErrUnsupportedOS }
func (l *Link) Has(a netip.Addr) (bool, error)    { return false, ErrUnsupportedOS }
func (l *Link) Put(p netip.Prefix) (bool, error)  { return false, ErrUnsupportedOS }
func (l *Link) Remove(a netip.Addr) (bool, error) { return false, ErrUnsupportedOS }
func (l *Link) SourceRoutes(a netip.Addr) error   { return ErrUnsupportedOS }
func (l *Link) UnsourceRoutes(a netip.Addr) error { return ErrUnsupportedOS }
func (l *Link) Announce(a netip.Addr, n int, gap time.Duration) error {
	return ErrUnsupportedOS
}
func (l *Link) Addrs() ([]netip.Prefix, error) { return nil, ErrUnsupportedOS }
func (l *Link) Index() int                     { return 0 }
func (l *Link) Up() bool                       { return false }
func (l *Link) Carrier() bool                  { return false }

// Announcer is a packet socket kept open (see the Linux implementation).
type Announcer struct{}

func NewAnnouncer() (*Announcer, error) { return nil, ErrUnsupportedOS }
func (a *Announcer) Close() error       { return ErrUnsupportedOS }
func (a *Announcer) Announce(l *Link, addr netip.Addr, n int, gap time.Duration) error {
	return ErrUnsupportedOS
}

// Namespace is another network namespace (see the Linux implementation).
type Namespace struct{}

func OpenNamespace(path string) (*Namespace, error)         { return nil, ErrUnsupportedOS }
func NamespaceInode(path string) (uint64, error)            { return 0, ErrUnsupportedOS }
func (n *Namespace) Inode() uint64                          { return 0 }
func (n *Namespace) ByName(name string) (*Link, error)      { return nil, ErrUnsupportedOS }
func (n *Namespace) BySubnet(p netip.Prefix) (*Link, error) { return nil, ErrUnsupportedOS }
func (n *Namespace) NewAnnouncer() (*Announcer, error)      { return nil, ErrUnsupportedOS }
func (n *Namespace) Close() error                           { return ErrUnsupportedOS }
