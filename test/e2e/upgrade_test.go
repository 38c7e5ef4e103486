package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/test/harness"
)

// The release the upgrade test starts from: its tag, and the commit the
// tag names (a clone without tags still has the commit).
const (
	previousRelease       = "v0.1.0"
	previousReleaseCommit = "03c0f795dad26e71423d2f697ba60504a354c93d"
)

// buildPreviousRelease builds the ars binary of previousRelease from this
// repository's history into a temp dir. Without the history (a shallow
// clone, an exported tree) the test is skipped, or fails when
// ARS_REQUIRE_UPGRADE is set.
func buildPreviousRelease(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	rev := ""
	for _, r := range []string{previousRelease, previousReleaseCommit} {
		if out, err := exec.Command("git", "-C", root, "rev-parse", "--verify", "-q", r+"^{commit}").Output(); err == nil &&
			strings.TrimSpace(string(out)) == previousReleaseCommit {
			rev = r
			break
		}
	}
	if rev == "" {
		msg := fmt.Sprintf("neither %s nor commit %s is in this repository's history: cannot build the previous release", previousRelease, previousReleaseCommit)
		if os.Getenv("ARS_REQUIRE_UPGRADE") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir := t.TempDir()
	archive := exec.Command("git", "-C", root, "archive", "--format=tar", rev)
	untar := exec.Command("tar", "-x", "-C", dir)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	untar.Stdin = pipe
	if err := untar.Start(); err != nil {
		t.Fatal(err)
	}
	if err := archive.Run(); err != nil {
		t.Fatalf("git archive %s: %v", rev, err)
	}
	if err := untar.Wait(); err != nil {
		t.Fatalf("untar %s: %v", rev, err)
	}
	bin := filepath.Join(dir, "bin", "ars")
	// -trimpath: the packages' cache keys leave out the temp dir, so a
	// second build (the other upgrade test) is mostly a link.
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/ars")
	build.Dir = dir
	build.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building ars %s: %v\n%s", previousRelease, err, out)
	}
	return bin
}

// client is an operator API client of one node.
func (p *procCluster) client(node string) *api.Client {
	p.t.Helper()
	ca, err := os.ReadFile(filepath.Join(p.dir, "certs", "ca.pem"))
	if err != nil {
		p.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	token, err := os.ReadFile(filepath.Join(p.dir, "certs", "operator.token"))
	if err != nil {
		p.t.Fatal(err)
	}
	c, err := api.NewClient(p.api[node], strings.TrimSpace(string(token)), &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(c.Close)
	return c
}

// running fails the test if an agent process has exited: a node that
// halts on an entry it cannot read exits.
func (p *procCluster) running() {
	p.t.Helper()
	for name, cmd := range p.procs {
		if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
			p.t.Fatalf("%s is no longer running: %v", name, err)
		}
	}
}

// A rolling upgrade from the previous release: three agents of that
// release, upgraded one at a time (followers first, then the leader after
// a leadership transfer). No node halts; while a node of the old release
// is in the cluster the leader writes no entry of a newer format level (a
// service spec with dos_mode parallel is refused by an upgraded leader with
// needs_upgrade, and refused as invalid by an old one); once the last node
// runs this build the entry is written, and every node ends with the same
// state. The agents drive no replica: the test is about the log.
func TestProcessRollingUpgradeFromThePreviousRelease(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the previous release and starts three agent processes")
	}
	oldBin := buildPreviousRelease(t)
	p := newProcCluster(t)
	nodes := []string{"n1", "n2", "n3"}
	for _, n := range nodes {
		p.startWith(n, oldBin)
	}
	ctx := context.Background()
	clients := map[string]*api.Client{}
	for _, n := range nodes {
		clients[n] = p.client(n)
	}
	upgraded := map[string]bool{}
	leaderOf := func() (string, error) {
		var leader string
		for _, n := range nodes {
			st, err := clients[n].Status(ctx)
			if err != nil {
				return "", fmt.Errorf("%s: %w", n, err)
			}
			if st.Leader == "" || (leader != "" && st.Leader != leader) {
				return "", fmt.Errorf("%s sees leader %q", n, st.Leader)
			}
			leader = st.Leader
		}
		return leader, nil
	}
	// settled waits for three alive voters that agree on a leader and have
	// applied the leader's commit index, and returns the leader.
	settled := func(what string) string {
		var leader string
		harness.WaitFor(t, 30*time.Second, what, func() error {
			p.running()
			l, err := leaderOf()
			if err != nil {
				return err
			}
			members, err := clients[l].Members(ctx)
			if err != nil {
				return err
			}
			alive := 0
			for _, m := range members {
				if m.Status == "alive" && m.Voter {
					alive++
				}
			}
			if alive != 3 {
				return fmt.Errorf("%d alive voters: %+v", alive, members)
			}
			lst, err := clients[l].Status(ctx)
			if err != nil {
				return err
			}
			for _, n := range nodes {
				st, err := clients[n].Status(ctx)
				if err != nil {
					return err
				}
				if st.AppliedIndex < lst.CommitIndex {
					return fmt.Errorf("%s applied %d of %d", n, st.AppliedIndex, lst.CommitIndex)
				}
			}
			leader = l
			return nil
		})
		return leader
	}
	leader := settled("three agents of " + previousRelease)
	for _, n := range nodes {
		if st, _ := clients[n].Status(ctx); st.FormatLevel != 0 {
			t.Fatalf("%s of %s advertises format level %d; the test expects a release before levels", n, previousRelease, st.FormatLevel)
		}
	}
	spec, err := os.ReadFile(filepath.Join("..", "..", "deploy", "examples", "service-dns.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := p.cli("-addr", p.api[leader], "service", "apply", filepath.Join("..", "..", "deploy", "examples", "service-dns.yaml")); err != nil {
		t.Fatalf("service apply on %s: %v\n%s\n%s", previousRelease, err, out, spec)
	}

	// The level-2 entry of the test: the service's DoS mode set to
	// parallel (a 0.1.0 node refuses the value; the state would differ).
	parallelSpec := filepath.Join(p.dir, "service-parallel.yaml")
	if !strings.Contains(string(spec), "dos_mode: make-before-break") {
		t.Fatalf("the example service spec has no dos_mode: make-before-break to change:\n%s", spec)
	}
	if err := os.WriteFile(parallelSpec, []byte(strings.Replace(string(spec), "dos_mode: make-before-break", "dos_mode: parallel", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if fsm.Level(fsm.ServiceApply{Spec: fsm.ServiceSpec{Policy: fsm.PolicySpec{DoSMode: fsm.ModeParallel}}}) <= fsm.BaseLevel {
		t.Fatal("dos_mode parallel is a base-level entry; the test needs one of a newer level")
	}
	dosMode := func(n string) string {
		svc, err := clients[n].Service(ctx, "dns")
		if err != nil {
			t.Fatalf("service on %s: %v", n, err)
		}
		return svc.Spec.Policy.DoSMode
	}
	// An operator sets the new mode while old nodes remain.
	askParallel := func(step string) {
		leader := settled(step)
		out, err := p.cli("-addr", p.api[leader], "service", "apply", parallelSpec)
		switch {
		case err == nil:
			t.Fatalf("%s: dos_mode parallel accepted by leader %s with a node of %s in the cluster:\n%s", step, leader, previousRelease, out)
		case upgraded[leader] && (!strings.Contains(out, "needs upgrade") || !strings.Contains(out, "level 1")):
			t.Fatalf("%s: upgraded leader %s did not answer needs_upgrade naming the old nodes: %v\n%s", step, leader, err, out)
		default:
			t.Logf("%s: leader %s (upgraded %v): %s", step, leader, upgraded[leader], strings.TrimSpace(out))
		}
		for _, n := range nodes {
			if m := dosMode(n); m != fsm.ModeMakeBeforeBreak {
				t.Fatalf("%s: %s has dos_mode %q before every node is upgraded", step, n, m)
			}
		}
		p.running()
	}

	upgrade := func(n string) {
		t.Logf("upgrading %s", n)
		cmd := p.procs[n]
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		delete(p.procs, n)
		p.start(n)
		upgraded[n] = true
	}
	askParallel("before the upgrade")
	var order []string
	for _, n := range nodes {
		if n != leader {
			order = append(order, n)
		}
	}
	for _, n := range order {
		upgrade(n)
		askParallel(n + " upgraded")
	}
	// Hand leadership to an upgraded node, then upgrade the last one.
	last := settled("before the leadership transfer")
	if !upgraded[last] {
		if err := clients[last].TransferLeader(ctx, order[0]); err != nil {
			t.Fatalf("transfer leadership from %s: %v", last, err)
		}
		harness.WaitFor(t, 20*time.Second, "an upgraded leader", func() error {
			l, err := leaderOf()
			if err != nil {
				return err
			}
			if !upgraded[l] {
				return fmt.Errorf("leader %s not upgraded", l)
			}
			return nil
		})
		askParallel("leadership on an upgraded node")
		upgrade(last)
	}
	leader = settled("every node upgraded")
	harness.WaitFor(t, 20*time.Second, "every node reads and writes the current level", func() error {
		return atCurrentLevel(ctx, nodes, clients)
	})
	// Now the entry is written.
	if out, err := p.cli("-addr", p.api[leader], "service", "apply", parallelSpec); err != nil {
		t.Fatalf("dos_mode parallel after every node was upgraded: %v\n%s", err, out)
	}
	harness.WaitFor(t, 20*time.Second, "the new mode on every node, one state everywhere", func() error {
		p.running()
		for _, n := range nodes {
			if m := dosMode(n); m != fsm.ModeParallel {
				return fmt.Errorf("%s has dos_mode %q", n, m)
			}
		}
		return oneState(ctx, nodes, func(ctx context.Context, n string) (api.Status, error) { return clients[n].StatusDigest(ctx) })
	})
}

// oneState says why the nodes do not all report the same applied index
// with the same state digest (docs/design.md §4.6), or nil.
func oneState(ctx context.Context, nodes []string, statusOf func(context.Context, string) (api.Status, error)) error {
	digest := ""
	var index uint64
	for _, n := range nodes {
		st, err := statusOf(ctx, n)
		if err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		if digest == "" {
			digest, index = st.StateDigest, st.StateIndex
		} else if st.StateIndex != index || st.StateDigest != digest {
			return fmt.Errorf("%s at %d has digest %.12s; another node at %d has %.12s", n, st.StateIndex, st.StateDigest, index, digest)
		}
	}
	return nil
}

// atCurrentLevel says why a node does not read and write this build's
// log format level, with nobody behind it, or nil.
func atCurrentLevel(ctx context.Context, nodes []string, clients map[string]*api.Client) error {
	for _, n := range nodes {
		st, err := clients[n].Status(ctx)
		if err != nil {
			return err
		}
		if st.FormatLevel != fsm.FormatLevel || st.ClusterFormatLevel != fsm.FormatLevel || len(st.FormatBehind) != 0 {
			return fmt.Errorf("%s: level %d, cluster %d, behind %v", n, st.FormatLevel, st.ClusterFormatLevel, st.FormatBehind)
		}
	}
	return nil
}
