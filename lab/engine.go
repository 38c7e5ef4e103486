package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
	start := time.Now()
	err := restartDockerd(ctx, func(ctx context.Context) error {
		_, err := l.ctrs.cli.Ping(ctx, client.PingOptions{})
		return err
	})
	l.record("", "engine-restart", err)
	return time.Since(start), err
}

// restartDockerd restarts the daemon named by DockerPidFile; ping tells
// when the new one answers.
func restartDockerd(ctx context.Context, ping func(context.Context) error) error {
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
	closeInheritedOnExec()
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

// closeInheritedOnExec marks every descriptor above stderr close-on-exec.
// Go opens its own that way; only descriptors inherited from whoever
// started this process are changed.
func closeInheritedOnExec() {
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
