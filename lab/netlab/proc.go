package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Proc is a process started in a lab namespace. It runs in its own process
// group; its signals go to that group.
type Proc struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // set before done is closed
}

// Run starts argv inside the replica's namespace. Its output goes to
// LogDir()/REPLICA-PROGRAM.log (appended).
func (l *Lab) Run(replica string, argv ...string) (*Proc, error) {
	if !slices.Contains(l.t.Replicas, replica) {
		return nil, fmt.Errorf("netlab: no replica %q", replica)
	}
	return l.start(l.Namespace(replica), replica, argv)
}

// RunBeside starts argv inside the replica's namespace as a process that
// is not part of the replica's "guest" (the lab's replica agent):
// SignalReplica leaves it alone, so a DoS, a suspend, a power-off or a
// revert of the replica does not reach it. Down kills it with everything
// else. Its output goes to LogDir()/REPLICA-PROGRAM.log.
func (l *Lab) RunBeside(replica string, argv ...string) (*Proc, error) {
	p, err := l.Run(replica, argv...)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	if l.beside == nil {
		l.beside = map[*Proc]string{}
	}
	l.beside[p] = replica
	l.mu.Unlock()
	return p, nil
}

// RunAgent starts argv in a container agent's namespace
// (Topology.ContainerAgents); Down kills it with everything else. Its
// output goes to LogDir()/NAME-PROGRAM.log.
func (l *Lab) RunAgent(container string, argv ...string) (*Proc, error) {
	if !l.ContainerAgent(container) {
		return nil, fmt.Errorf("netlab: no container agent %q", container)
	}
	return l.start(l.AgentNamespace(container), container, argv)
}

// besidePids lists the running processes RunBeside started in the
// replica's namespace.
func (l *Lab) besidePids(replica string) map[int]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[int]bool{}
	for p, r := range l.beside {
		if r == replica && !p.exited() {
			out[p.Pid()] = true
		}
	}
	return out
}

// RunClient starts argv inside the client's namespace; its output goes to
// LogDir()/client-PROGRAM.log.
func (l *Lab) RunClient(argv ...string) (*Proc, error) {
	return l.start(l.clientNS(), "client", argv)
}

// start runs argv through `ip netns exec NS`, which joins the namespace,
// mounts a sysfs of that namespace in a private mount namespace and then
// execs argv: the process's PID is argv's, so signals reach it directly.
func (l *Lab) start(ns, who string, argv []string) (*Proc, error) {
	if len(argv) == 0 {
		return nil, errors.New("netlab: empty command")
	}
	if err := os.MkdirAll(l.LogDir(), 0o755); err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	logPath := filepath.Join(l.LogDir(), who+"-"+filepath.Base(argv[0])+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	defer f.Close() // the child has its own copy
	fmt.Fprintf(f, "--- %s netlab: %s in %s\n", time.Now().UTC().Format(time.RFC3339Nano), strings.Join(argv, " "), ns)
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if !l.t.Persist {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("netlab: start %s in %s: %w", argv[0], ns, err)
	}
	p := &Proc{name: who + ":" + filepath.Base(argv[0]), log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	l.procs = append(l.procs, p)
	return p, nil
}

// Pid is the process's ID (and its process group's).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// LogPath is the file its output goes to.
func (p *Proc) LogPath() string { return p.log }

// Done is closed when the process has exited and was reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the exit error once Done is closed (nil for exit status 0).
func (p *Proc) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

func (p *Proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process's group; nothing once it has exited.
func (p *Proc) Signal(sig syscall.Signal) error {
	if p.exited() {
		return nil
	}
	if err := syscall.Kill(-p.Pid(), sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("netlab: signal %s to %s: %w", sig, p.name, err)
	}
	return nil
}

// Stop suspends the process (SIGSTOP): it keeps its sockets and answers
// nothing, as a suspended VM.
func (p *Proc) Stop() error { return p.Signal(syscall.SIGSTOP) }

// Cont resumes a stopped process (SIGCONT).
func (p *Proc) Cont() error { return p.Signal(syscall.SIGCONT) }

// Kill powers the process off (SIGKILL to its group) and waits, at most
// 5 s, until it is reaped.
func (p *Proc) Kill() error {
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("netlab: %s (pid %d) not gone 5 s after SIGKILL", p.name, p.Pid())
	}
}

// Exec runs argv in the client's namespace and returns its combined output.
func (l *Lab) Exec(ctx context.Context, argv ...string) ([]byte, error) {
	return l.execIn(ctx, l.clientNS(), argv)
}

// RunNode starts argv inside the node's namespace; its output goes to
// LogDir()/node-NODE-PROGRAM.log.
func (l *Lab) RunNode(node string, argv ...string) (*Proc, error) {
	if !slices.Contains(l.t.Nodes, node) {
		return nil, fmt.Errorf("netlab: no node %q", node)
	}
	return l.start(l.NodeNamespace(node), "node-"+node, argv)
}

// ExecNode runs argv in the node's namespace and returns its combined
// output.
func (l *Lab) ExecNode(ctx context.Context, node string, argv ...string) ([]byte, error) {
	if !slices.Contains(l.t.Nodes, node) {
		return nil, fmt.Errorf("netlab: no node %q", node)
	}
	return l.execIn(ctx, l.NodeNamespace(node), argv)
}

// ExecIn runs argv in the replica's namespace and returns its combined
// output.
func (l *Lab) ExecIn(ctx context.Context, replica string, argv ...string) ([]byte, error) {
	if !slices.Contains(l.t.Replicas, replica) {
		return nil, fmt.Errorf("netlab: no replica %q", replica)
	}
	return l.execIn(ctx, l.Namespace(replica), argv)
}

func (l *Lab) execIn(ctx context.Context, ns string, argv []string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, errors.New("netlab: empty command")
	}
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, argv...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("netlab: %s in %s: %w", argv[0], ns, err)
	}
	return out.Bytes(), nil
}
