package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns add` bind-mounts named namespaces.
const netnsDir = "/run/netns"

// inNetns runs fn on a locked OS thread that has joined the network
// namespace at nsPath. Sockets created by fn stay in that namespace after it
// returns. fn must not start goroutines that expect to be in the namespace:
// only the calling thread is moved. The thread is moved back afterwards;
// if that fails it is not unlocked, so the runtime discards it instead of
// reusing a thread in the wrong namespace.
func inNetns(nsPath string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		restored := false
		defer func() {
			if restored {
				runtime.UnlockOSThread()
			}
		}()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			restored = true // nothing changed yet
			errc <- fmt.Errorf("netlab: open own netns: %w", err)
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			restored = true
			errc <- fmt.Errorf("netlab: open %s: %w", nsPath, err)
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			restored = true
			errc <- fmt.Errorf("netlab: setns %s: %w", nsPath, err)
			return
		}
		ferr := fn()
		restored = unix.Setns(orig, unix.CLONE_NEWNET) == nil
		errc <- ferr
	}()
	return <-errc
}

// nsInode returns the inode of a named namespace's nsfs file, the
// namespace's identity as /proc/PID/ns/net shows it ("net:[INODE]").
func nsInode(name string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(netnsDir, name), &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// SignalNetns sends sig to every process whose network namespace is the
// one at nsPath (a container's: /proc/PID/ns/net), never this process.
func SignalNetns(nsPath string, sig syscall.Signal) error {
	var st unix.Stat_t
	if err := unix.Stat(nsPath, &st); err != nil {
		return fmt.Errorf("netlab: %w", err)
	}
	var errs []error
	for _, p := range pidsIn(map[uint64]bool{st.Ino: true}) {
		if err := syscall.Kill(p, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("netlab: kill %d: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// SignalPidns sends sig to every process whose PID namespace is the one
// at nsPath (a container's: /proc/PID/ns/pid), never this process: every
// process of that container and nothing that only shares its network
// namespace, such as the Docker driver's address helper.
func SignalPidns(nsPath string, sig syscall.Signal) error {
	var st unix.Stat_t
	if err := unix.Stat(nsPath, &st); err != nil {
		return fmt.Errorf("netlab: %w", err)
	}
	var errs []error
	for _, p := range pidsInNS("pid", map[uint64]bool{st.Ino: true}) {
		if err := syscall.Kill(p, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("netlab: kill %d: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// pidsIn lists the processes (thread-group leaders) whose network
// namespace is one of inodes, never this process. Zombies have no
// namespace left and are not listed.
func pidsIn(inodes map[uint64]bool) []int { return pidsInNS("net", inodes) }

// pidsInNS is pidsIn for namespaces of kind ("net", "pid").
func pidsInNS(kind string, inodes map[uint64]bool) []int {
	if len(inodes) == 0 {
		return nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		link, err := os.Readlink("/proc/" + e.Name() + "/ns/" + kind)
		if err != nil {
			continue
		}
		s, ok := strings.CutPrefix(link, kind+":[")
		if !ok {
			continue
		}
		ino, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64)
		if err == nil && inodes[ino] {
			pids = append(pids, pid)
		}
	}
	return pids
}

// namespaces lists the named network namespaces whose name starts with
// prefix+"-".
func namespaces(prefix string) ([]string, error) {
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix+"-") {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// rootLinks lists links of this process's (the host's) network namespace
// whose name starts with prefix+"-". The lab creates none there; anything
// listed is a leftover of some other tool or a bug.
func rootLinks(prefix string) ([]string, error) {
	ents, err := os.ReadDir("/sys/class/net")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix+"-") {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// ipTimeout bounds one run of ip(8).
const ipTimeout = 10 * time.Second

// ip runs ip(8) with args and returns its standard output.
func ip(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, ipTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("netlab: ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

// killAndWait sends SIGKILL to every process in the namespaces with the
// given inodes and waits (bounded) until none is left.
func killAndWait(ctx context.Context, inodes map[uint64]bool, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for i := 0; ; i++ {
		pids := pidsIn(inodes)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("netlab: processes still in lab namespaces after %s: %v", limit, pids)
		}
		if i%10 == 0 { // again now and then, for forks that raced the first
			for _, p := range pids {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, bounded by limit
	}
}

// ListenHub listens on the hub's address (Topology.Hub) inside the hub
// namespace: the socket lives there, this process does not move. Nodes,
// the client and attached replicas reach it; the host's namespace does not.
func (l *Lab) ListenHub(port int) (net.Listener, error) {
	var ln net.Listener
	err := inNetns(filepath.Join(netnsDir, l.hubNS()), func() error {
		var err error
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(l.t.Hub, uint16(port)).String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlab: listen in %s: %w", l.hubNS(), err)
	}
	return ln, nil
}

// DialContext dials from inside the client namespace, as the lab's client
// (and an operator's CLI there) would: an http.Transport or a DNS client
// in this process can use it to reach the nodes' APIs and the service
// address without leaving the lab.
func (l *Lab) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNetns(filepath.Join(netnsDir, l.clientNS()), func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}
