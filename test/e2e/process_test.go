package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/test/harness"
)

// arsBinary returns the ars binary to run: $ARS_BIN (make test and make
// e2e set it) or one built into a temp dir.
func arsBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("ARS_BIN"); p != "" {
		return p
	}
	return goBuild(t, "ars", "github.com/ars-project/ars/cmd/ars")
}

// labBinary returns the ars-lab binary to run: $ARS_LAB_BIN (make test
// and make e2e set it) or one built into a temp dir. Either way it runs
// the ars of arsBinary: $ARS_BIN is set for the test's child processes,
// so the test must not be parallel.
func labBinary(t *testing.T) string {
	t.Helper()
	t.Setenv("ARS_BIN", arsBinary(t))
	if p := os.Getenv("ARS_LAB_BIN"); p != "" {
		return p
	}
	return goBuild(t, "ars-lab", "github.com/ars-project/ars/cmd/ars-lab")
}

// goBuild builds pkg into a temp dir as name.
func goBuild(t *testing.T, name, pkg string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), name)
	cmd := exec.Command("go", "build", "-o", out, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", name, err, b)
	}
	return out
}

type procCluster struct {
	t     *testing.T
	bin   string
	dir   string
	procs map[string]*exec.Cmd
	api   map[string]string
}

// startProcCluster copies deploy/examples/three-node into a temp dir,
// creates its certificates with `ars keygen` and starts the three agents.
func startProcCluster(t *testing.T) *procCluster {
	t.Helper()
	p := newProcCluster(t)
	for _, n := range []string{"n1", "n2", "n3"} {
		p.start(n)
	}
	return p
}

// newProcCluster is startProcCluster without starting the agents (their
// configurations can still be changed).
func newProcCluster(t *testing.T) *procCluster {
	t.Helper()
	p := &procCluster{t: t, bin: arsBinary(t), dir: t.TempDir(), procs: map[string]*exec.Cmd{}, api: map[string]string{}}
	for _, n := range []string{"n1", "n2", "n3"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "examples", "three-node", n+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p.dir, n+".yaml"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := p.cli("keygen", "-dir", filepath.Join(p.dir, "certs"), "-nodes", "n1=127.0.0.1,n2=127.0.0.2,n3=127.0.0.3"); err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	for i, n := range []string{"n1", "n2", "n3"} {
		p.api[n] = fmt.Sprintf("https://127.0.0.%d:7500", i+1)
	}
	return p
}

func (p *procCluster) start(name string) { p.startWith(name, p.bin) }

// startWith starts the agent of node name from the ars binary bin.
func (p *procCluster) startWith(name, bin string) {
	p.t.Helper()
	logf, err := os.OpenFile(filepath.Join(p.dir, name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		p.t.Fatal(err)
	}
	cmd := exec.Command(bin, "agent", "-config", filepath.Join(p.dir, name+".yaml"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", name, err)
	}
	p.procs[name] = cmd
	p.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		logf.Close()
		if p.t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			p.t.Logf("--- %s log (tail) ---\n%s", name, tail(string(b), 40))
		}
	})
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// cli runs the ars CLI with the operator token and the cluster CA.
func (p *procCluster) cli(args ...string) (string, error) {
	cmd := exec.Command(p.bin, args...)
	cmd.Env = append(os.Environ(),
		"ARS_CACERT="+filepath.Join(p.dir, "certs", "ca.pem"),
		"ARS_HTTP_TOKEN_FILE="+filepath.Join(p.dir, "certs", "operator.token"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func (p *procCluster) jsonCLI(v any, node string, args ...string) error {
	out, err := p.cli(append([]string{"-addr", p.api[node], "-o", "json"}, args...)...)
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return json.Unmarshal([]byte(out), v)
}

func TestProcessThreeAgentsSurviveKillOfLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three agent processes")
	}
	p := startProcCluster(t)

	var leader string
	harness.WaitFor(t, 20*time.Second, "three members and three raft peers", func() error {
		var members []api.Member
		if err := p.jsonCLI(&members, "n2", "members"); err != nil {
			return err
		}
		alive := 0
		for _, m := range members {
			if m.Status == "alive" && m.Voter {
				alive++
			}
		}
		if alive != 3 {
			return fmt.Errorf("members %+v", members)
		}
		var peers []api.Peer
		if err := p.jsonCLI(&peers, "n3", "raft", "peers"); err != nil {
			return err
		}
		if len(peers) != 3 {
			return fmt.Errorf("peers %+v", peers)
		}
		for _, pe := range peers {
			if pe.Leader {
				leader = pe.ID
			}
		}
		if leader == "" {
			return fmt.Errorf("no leader in %+v", peers)
		}
		return nil
	})

	// A service applied through a follower, from the deploy example.
	follower := "n1"
	if leader == "n1" {
		follower = "n2"
	}
	harness.WaitFor(t, 10*time.Second, "service apply through "+follower, func() error {
		if out, err := p.cli("-addr", p.api[follower], "service", "apply", filepath.Join("..", "..", "deploy", "examples", "service-dns.yaml")); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})

	// kill -9 the leader; a survivor reports a new leader.
	killed := time.Now()
	if err := p.procs[leader].Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p.procs[leader].Wait()
	var survivor string
	for _, n := range []string{"n1", "n2", "n3"} {
		if n != leader {
			survivor = n
			break
		}
	}
	var newLeader string
	harness.WaitFor(t, 15*time.Second, "a new leader", func() error {
		var st api.Status
		if err := p.jsonCLI(&st, survivor, "status"); err != nil {
			return err
		}
		if st.Leader == "" || st.Leader == leader {
			return fmt.Errorf("leader %q", st.Leader)
		}
		newLeader = st.Leader
		return nil
	})
	t.Logf("new leader %s reported by %s %v after kill -9 of %s", newLeader, survivor, time.Since(killed).Round(time.Millisecond), leader)

	// The state survived. The apply was acknowledged once a quorum held
	// it; the survivor asked may learn the commit from the new leader a
	// moment later, so poll.
	harness.WaitFor(t, 10*time.Second, "the service on "+survivor, func() error {
		var svcs []json.RawMessage
		if err := p.jsonCLI(&svcs, survivor, "service", "list"); err != nil {
			return err
		}
		if len(svcs) != 1 {
			return fmt.Errorf("%d services", len(svcs))
		}
		return nil
	})
	// The killed node comes back from its data dir and catches up.
	p.start(leader)
	harness.WaitFor(t, 20*time.Second, leader+" back with the service", func() error {
		var s json.RawMessage
		return p.jsonCLI(&s, leader, "service", "show", "dns")
	})
	// Exit codes: an unknown service is an operation failure (1), a bad
	// flag a usage error (2), an unreachable node 3.
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"-addr", p.api[survivor], "service", "show", "nope"}, 1},
		{[]string{"-addr", p.api[survivor], "status", "-bogus"}, 2},
		{[]string{"-addr", "https://127.0.0.1:1", "status"}, 3},
	} {
		out, err := p.cli(tc.args...)
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != tc.code {
			t.Errorf("ars %v: err %v, want exit %d; output %q", tc.args, err, tc.code, out)
		}
		if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "ars: ") {
			t.Errorf("ars %v: want one 'ars: ' line, got %q", tc.args, out)
		}
	}
}
