package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/moby/client"
)

// DockerPidFile is where the Docker engine writes its process id.
const DockerPidFile = "/var/run/docker.pid"

// maxEngineRestart bounds each half of an engine restart (the old daemon
// stopping, the new one answering).
const maxEngineRestart = 60 * time.Second

// RestartEngine restarts the machine's Docker engine under the lab's
// container replicas, as a crash-and-restart of a production Docker host's
// daemon would: SIGTERM to the daemon (the engine stops every container;
// the replicas' restart policy is "no", so they stay stopped), wait for it
// to exit, start the same command line again in a session of its own with
// its output appended where the old one wrote, and wait until it answers.
// It returns how long the engine was away. Only a lab with container
// replicas restarts the engine.
func (l *Lab) RestartEngine(ctx context.Context) (time.Duration, error) {
	if l.ctrs == nil {
		return 0, badRequest("the lab has no container replicas: no engine to restart")
	}
	root := defaultDockerRoot
	if info, err := l.ctrs.cli.Info(ctx, client.InfoOptions{}); err == nil && info.Info.DockerRootDir != "" {
		root = info.Info.DockerRootDir
	}
	start := time.Now()
	err := restartDockerd(ctx, root, l.log, func(ctx context.Context) error {
		_, err := l.ctrs.cli.Ping(ctx, client.PingOptions{})
		return err
	})
	l.record("", "engine-restart", err)
	return time.Since(start), err
}

// defaultDockerRoot is the engine's data root where it does not say.
const defaultDockerRoot = "/var/lib/docker"

// restartDockerd restarts the daemon named by DockerPidFile, whose data
// root is root; ping tells when the new one answers. Between the two it
// unmounts what the stopped daemon left mounted under its data root (see
// unmountLeaked).
func restartDockerd(ctx context.Context, root string, log *slog.Logger, ping func(context.Context) error) error {
	b, err := os.ReadFile(DockerPidFile)
	if err != nil {
		return fmt.Errorf("lab: docker engine: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return fmt.Errorf("lab: docker engine: bad pid file %s: %q", DockerPidFile, b)
	}
	proc := "/proc/" + strconv.Itoa(pid)
	cmdline, err := os.ReadFile(proc + "/cmdline")
	if err != nil {
		return fmt.Errorf("lab: docker engine (pid %d): %w", pid, err)
	}
	argv := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if len(argv) == 0 || filepath.Base(argv[0]) != "dockerd" {
		return fmt.Errorf("lab: pid %d from %s is %q, not dockerd", pid, DockerPidFile, argv)
	}
	env, _ := os.ReadFile(proc + "/environ")
	out := "/dev/null"
	if p, err := os.Readlink(proc + "/fd/1"); err == nil && filepath.IsAbs(p) {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			out = p
		}
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("lab: stopping dockerd (pid %d): %w", pid, err)
	}
	deadline := time.Now().Add(maxEngineRestart)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("lab: dockerd (pid %d) did not exit within %s of SIGTERM", pid, maxEngineRestart)
		}
		time.Sleep(50 * time.Millisecond)
	}
	left, err := unmountLeaked("/proc/self/mountinfo", root)
	for _, mp := range left {
		log.Warn("lab: the stopped docker engine left a mount behind; unmounted it", "mount", mp)
	}
	if err != nil {
		// The engine starts all the same: a mount left behind costs one
		// container, an engine that stays down costs every one.
		log.Error("lab: a mount the stopped docker engine left behind stays", "err", err)
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("lab: dockerd log: %w", err)
	}
	defer f.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = f, f
	if len(env) > 0 {
		cmd.Env = strings.Split(strings.TrimRight(string(env), "\x00"), "\x00")
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// The daemon outlives this process: it must not inherit a descriptor
	// this process was handed without close-on-exec (a lock held by the
	// caller's flock kept that lock for as long as the engine ran).
	CloseInheritedOnExec()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("lab: starting dockerd again: %w", err)
	}
	// Reap it if it exits while this process lives; it outlives us
	// otherwise, as the original daemon did.
	go func() { _ = cmd.Wait() }()
	deadline = time.Now().Add(maxEngineRestart)
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := ping(pctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return errors.Join(fmt.Errorf("lab: dockerd did not answer within %s of its restart", maxEngineRestart), err, ctx.Err())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// CloseInheritedOnExec marks every descriptor above stderr close-on-exec,
// so that a daemon this process starts (the Docker engine, the lab's own
// daemon) holds none of them: a lock the caller's flock holds, a pipe a
// CI runner waits on. Go opens its own that way; only descriptors
// inherited from whoever started this process are changed.
func CloseInheritedOnExec() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}

// unmountLeaked unmounts (lazily) every mount below root listed in
// mountinfo, deepest first, and returns the mount points it unmounted.
// Called while no engine runs: a stopped engine has stopped every
// container and unmounted their root filesystems, so anything still
// mounted there was leaked. An engine stopped while it started a
// container with the fuse-overlayfs storage driver leaks that container's
// root filesystem (an orphaned fuse-overlayfs process keeps it mounted);
// the next engine bind-mounts its data root over it, and from then on the
// container can never be removed ("device or resource busy") until the
// machine restarts. The lab restarts the engine as a service manager
// would and cleans up after it as an administrator would.
func unmountLeaked(mountinfo, root string) ([]string, error) {
	mps, err := mountsBelow(mountinfo, root)
	if err != nil {
		return nil, err
	}
	var done []string
	var errs []error
	for _, mp := range mps {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("lab: unmounting %s, left behind by the stopped docker engine: %w", mp, err))
			continue
		}
		done = append(done, mp)
	}
	return done, errors.Join(errs...)
}

// mountsBelow lists the mount points below root in a mountinfo file
// (proc(5): the mount point is the fifth field), deepest first, so that a
// mount below another is taken down before it.
func mountsBelow(mountinfo, root string) ([]string, error) {
	b, err := os.ReadFile(mountinfo)
	if err != nil {
		return nil, fmt.Errorf("lab: reading mounts: %w", err)
	}
	return parseMountsBelow(string(b), root), nil
}

func parseMountsBelow(table, root string) []string {
	root = filepath.Clean(root)
	var mps []string
	for line := range strings.Lines(table) {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if strings.HasPrefix(mp, root+"/") {
			mps = append(mps, mp)
		}
	}
	slices.SortStableFunc(mps, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return mps
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space, …).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
