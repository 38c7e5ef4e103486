package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Node disks (Config.NodeDisks): each node's data directory is an ext4
// file system of its own, on a loop device over a sparse file beside it
// in the lab's state directory, so that a fault can fill it to the last
// byte or freeze it (every write and fsync then blocks until it is
// thawed: a stalled disk, Raft's own log writes included). A tmpfs can be
// filled but not frozen; a read-only remount is refused by the kernel
// while the node holds raft.db open for writing.

// NodeDiskSize is the size of a node's file system: room for the node's
// data and the product's default free-space minimum (64 MiB), so a
// healthy lab node is healthy by the product's own defaults.
const NodeDiskSize = 128 << 20

// fillerName is the file a disk-full fault writes beside the node's data.
const fillerName = ".lab-filler"

func (ns *nodeSet) dataDir(node string) string { return filepath.Join(ns.dir, node) }
func (ns *nodeSet) diskImage(node string) string {
	return filepath.Join(ns.dir, node+".img")
}

// makeDisk makes and mounts node's file system on its data directory.
func (ns *nodeSet) makeDisk(ctx context.Context, node string) error {
	img := ns.diskImage(node)
	f, err := os.OpenFile(img, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("lab: node disk: %w", err)
	}
	err = f.Truncate(NodeDiskSize)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("lab: node disk: %w", err)
	}
	// -m 0: no blocks reserved for root (the agent runs as root and
	// would fill them too, so they would only make "full" harder to read).
	if err := runTool(ctx, "mkfs.ext4", "-q", "-F", "-m", "0", img); err != nil {
		return err
	}
	if err := runTool(ctx, "mount", "-o", "loop", img, ns.dataDir(node)); err != nil {
		return err
	}
	if err := os.Chmod(ns.dataDir(node), 0o700); err != nil {
		return fmt.Errorf("lab: node disk: %w", err)
	}
	return nil
}

// unmountDisks thaws and detaches every file system mounted under the
// nodes' directory: this lab's, or a crashed lab's before it is cleared.
func (ns *nodeSet) unmountDisks() error {
	mps, err := mountsBelow("/proc/self/mountinfo", ns.dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, mp := range mps {
		// A frozen file system would hold its writers (and their
		// exit) until thawed; thaw fails harmlessly on one that is not.
		_ = runTool(context.Background(), "fsfreeze", "-u", mp)
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("lab: unmount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// hasDisk reports whether node's data directory is a file system of its
// own, or an error saying the lab has no node disks.
func (ns *nodeSet) hasDisk(node string) error {
	if ns == nil || !ns.l.cfg.NodeDisks {
		return badRequest("the lab's nodes have no disks of their own (ars-lab up -node-disks)")
	}
	if !slices.Contains(ns.l.Net.Topology().Nodes, node) {
		return badRequest("no node %q", node)
	}
	return nil
}

// FillNodeDisk fills node's file system to the last byte, with a file
// beside the node's data, until FreeNodeDisk.
func (l *Lab) FillNodeDisk(node string) error {
	if err := l.nodes.hasDisk(node); err != nil {
		return err
	}
	return l.recordNode(node, EvDiskFull, fillFS(filepath.Join(l.nodes.dataDir(node), fillerName)))
}

// FreeNodeDisk removes what FillNodeDisk wrote (nothing to do if it wrote
// nothing).
func (l *Lab) FreeNodeDisk(node string) error {
	if err := l.nodes.hasDisk(node); err != nil {
		return err
	}
	err := os.Remove(filepath.Join(l.nodes.dataDir(node), fillerName))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		err = fmt.Errorf("lab: free node disk: %w", err)
	}
	return l.recordNode(node, EvDiskFreed, err)
}

// FreezeNodeDisk freezes node's file system: from now on every write to
// it blocks until ThawNodeDisk.
func (l *Lab) FreezeNodeDisk(node string) error {
	if err := l.nodes.hasDisk(node); err != nil {
		return err
	}
	return l.recordNode(node, EvDiskFrozen, runTool(context.Background(), "fsfreeze", "-f", l.nodes.dataDir(node)))
}

// ThawNodeDisk thaws node's file system (nothing to do if it is not
// frozen).
func (l *Lab) ThawNodeDisk(node string) error {
	if err := l.nodes.hasDisk(node); err != nil {
		return err
	}
	err := runTool(context.Background(), "fsfreeze", "-u", l.nodes.dataDir(node))
	if err != nil && strings.Contains(err.Error(), "Invalid argument") {
		return nil // not frozen
	}
	return l.recordNode(node, EvDiskThawed, err)
}

// healDisks thaws and frees every node's disk.
func (l *Lab) healDisks() []string {
	if l.nodes == nil || !l.cfg.NodeDisks {
		return nil
	}
	var errs []string
	for _, n := range l.Net.Topology().Nodes {
		if err := l.ThawNodeDisk(n); err != nil {
			errs = append(errs, err.Error())
		}
		if err := l.FreeNodeDisk(n); err != nil {
			errs = append(errs, err.Error())
		}
	}
	return errs
}

// fillFS writes path until its file system has no byte left: big writes
// first, then page by page for the rest.
func fillFS(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("lab: fill: %w", err)
	}
	defer f.Close()
	for _, size := range []int{1 << 20, 4096, 1} {
		buf := make([]byte, size)
		for {
			if _, err := f.Write(buf); err != nil {
				if errors.Is(err, unix.ENOSPC) {
					break
				}
				return fmt.Errorf("lab: fill: %w", err)
			}
		}
	}
	return nil
}

// runTool runs a system tool, bounded, with its output in the error.
func runTool(ctx context.Context, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("lab: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
