package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/cmd/ars/internal/apparmor"
	"github.com/ars-project/ars/cmd/internal/cli"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/test/testutil"
)

const watchWait = 10 * time.Second

// denial is an auditd AppArmor denial with the given serial and name.
func denial(serial int, profile, name string) string {
	return fmt.Sprintf(`type=AVC msg=audit(1700000000.%03d:%d): apparmor="DENIED" operation="exec" profile="%s" name="%s" pid=%d comm="named" requested_mask="x" denied_mask="x" fsuid=0 ouid=0`,
		serial%1000, serial, profile, name, 1000+serial)
}

// kernDenial is the kernel/syslog form.
func kernDenial(serial int, profile, name string) string {
	return fmt.Sprintf(`Nov 14 22:13:20 replica kernel: [ 123.456] audit: type=1400 audit(1700000001.%03d:%d): apparmor="DENIED" operation="open" profile="%s" name="%s" pid=7 comm="named" requested_mask="r" denied_mask="r" fsuid=0 ouid=0`,
		serial%1000, serial, profile, name)
}

func idOf(t *testing.T, line string) string {
	t.Helper()
	r, err := apparmor.Parse(line)
	if err != nil {
		t.Fatal(err)
	}
	return r.ID()
}

// watchRun is a running `ars watch apparmor`.
type watchRun struct {
	stdout, stderr *testutil.SyncBuffer
	cancel         context.CancelFunc
	done           chan int
}

func startWatch(t *testing.T, env map[string]string, args ...string) *watchRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watchRun{stdout: &testutil.SyncBuffer{}, stderr: &testutil.SyncBuffer{}, cancel: cancel, done: make(chan int, 1)}
	go func() {
		w.done <- app.Run(ctx, append([]string{"watch", "apparmor", "-poll", "10ms"}, args...), cli.Streams{
			Stdin: strings.NewReader(""), Stdout: w.stdout, Stderr: w.stderr,
			Getenv: func(k string) string { return env[k] },
		})
	}()
	t.Cleanup(func() { w.stop(t) })
	return w
}

// stop cancels the watcher (as SIGINT does) and returns its exit code.
func (w *watchRun) stop(t *testing.T) int {
	t.Helper()
	w.cancel()
	select {
	case code := <-w.done:
		w.done <- code
		return code
	case <-time.After(watchWait):
		t.Fatalf("watcher did not stop; stderr:\n%s", w.stderr.String())
		return -1
	}
}

// waitFor polls cond until it holds.
func waitFor(t *testing.T, what string, cond func() bool, w *watchRun) {
	t.Helper()
	deadline := time.Now().Add(watchWait)
	for !cond() {
		select {
		case code := <-w.done:
			w.done <- code
			t.Fatalf("watcher exited (%d) while waiting for %s; stderr:\n%s", code, what, w.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; stdout:\n%s\nstderr:\n%s", what, w.stdout.String(), w.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func appendLines(t *testing.T, path string, lines ...string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		if _, err := f.WriteString(l + "\n"); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func (n *testNode) ledgerIDs() []string {
	var ids []string
	for _, a := range n.ledger() {
		ids = append(ids, a.ID)
	}
	return ids
}

func sameIDs(got []string, want ...string) bool {
	return strings.Join(got, ",") == strings.Join(want, ",")
}

func TestWatchAppArmorPostsEachDenialOnce(t *testing.T) {
	n := alertNode(t)
	env := n.roleEnv(t, "detector")
	log := filepath.Join(t.TempDir(), "audit.log")
	const named = "/usr/sbin/named"
	old := denial(1, named, "/bin/old")
	appendLines(t, log, old) // before the watcher starts: not reported

	w := startWatch(t, env, "-log", log, "-service", "dns", "-replica", "lin-unbound", "-profile", named)
	waitFor(t, "the watcher to follow the log", func() bool { return strings.Contains(w.stderr.String(), "following the log file") }, w)

	d1, d2 := denial(2, named, "/bin/sh"), kernDenial(3, named+"//null-/bin/sh", "/etc/shadow")
	appendLines(t, log,
		d1,
		`type=AVC msg=audit(1700000000.010:10): apparmor="ALLOWED" operation="open" profile="/usr/sbin/named" name="/etc/passwd" pid=1 comm="named" requested_mask="r" denied_mask="r" fsuid=0 ouid=0`,
		`type=AVC msg=audit(1700000000.011:11): apparmor="STATUS" operation="profile_load" profile="unconfined" name="/usr/sbin/named" pid=1 comm="apparmor_parser"`,
		`type=SYSCALL msg=audit(1700000000.012:12): arch=c000003e syscall=59 success=no exit=-13`,
		`type=AVC msg=audit(1700000000.013:13): apparmor="DENIED" operation="exec" profile="/usr/sbin/named" name=/bin/sh`,
		denial(14, "/usr/sbin/unbound", "/bin/sh"), // another profile: filtered out
		d2,
		d1, // the same event again (e.g. in two logs): a duplicate
	)
	id1, id2 := idOf(t, d1), idOf(t, d2)
	waitFor(t, "two alerts and one duplicate", func() bool {
		return sameIDs(n.ledgerIDs(), id1, id2) && strings.Count(w.stdout.String(), "duplicate\t"+id1) == 1
	}, w)
	a := n.ledger()[0]
	if a.Kind != "exploit" || a.Service != "dns" || a.Replica != "lin-unbound" || a.Source != "apparmor" ||
		!strings.Contains(a.Evidence, `operation="exec" profile="/usr/sbin/named" name="/bin/sh"`) || !strings.Contains(a.Evidence, "audit(1700000000.002:2)") {
		t.Fatalf("alert %+v", a)
	}
	if !strings.Contains(w.stderr.String(), "skipping an unreadable AppArmor record") {
		t.Errorf("malformed record not reported:\n%s", w.stderr.String())
	}

	// Rotation by rename and re-create, then truncation.
	d3, d4 := denial(20, named, "/bin/rotated"), denial(21, named, "/bin/truncated")
	if err := os.Rename(log, log+".1"); err != nil {
		t.Fatal(err)
	}
	appendLines(t, log, d3)
	waitFor(t, "the alert from the new file", func() bool { return sameIDs(n.ledgerIDs(), id1, id2, idOf(t, d3)) }, w)
	if err := os.Truncate(log, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the truncation to be noticed", func() bool { return strings.Contains(w.stderr.String(), "truncated") }, w)
	appendLines(t, log, d4)
	waitFor(t, "the alert after truncation", func() bool { return sameIDs(n.ledgerIDs(), id1, id2, idOf(t, d3), idOf(t, d4)) }, w)
	// Committed is not yet acknowledged: wait for the answer to arrive.
	waitFor(t, "the fourth acknowledgement", func() bool { return strings.Count(w.stdout.String(), "committed\t") == 4 }, w)

	if code := w.stop(t); code != 0 {
		t.Fatalf("exit %d after stop; stderr:\n%s", code, w.stderr.String())
	}
	if !strings.Contains(w.stderr.String(), "committed=4 duplicates=1 dropped=0 unacknowledged=0") {
		t.Errorf("no final tally:\n%s", w.stderr.String())
	}
	secret, _ := os.ReadFile(env[cli.EnvTokenFile])
	if s := strings.TrimSpace(string(secret)); s == "" || strings.Contains(w.stderr.String()+w.stdout.String(), s) {
		t.Fatal("the token appears in the watcher's output")
	}
	if ids := n.ledgerIDs(); len(ids) != 4 || slicesContains(ids, idOf(t, old)) {
		t.Fatalf("ledger %v", ids)
	}
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestWatchAppArmorRetriesUntilLeader(t *testing.T) {
	n := alertNode(t)
	n.b.mu.Lock()
	n.b.leader = false // every alert is answered no_leader
	n.b.mu.Unlock()
	log := filepath.Join(t.TempDir(), "audit.log")
	d := denial(5, "/usr/sbin/named", "/bin/sh")
	appendLines(t, log, d)
	w := startWatch(t, n.roleEnv(t, "detector"), "-log", log, "-service", "dns", "-replica", "win-bind", "-from-start", "-o", "json")

	waitFor(t, "two no_leader answers", func() bool { return strings.Count(w.stderr.String(), "no_leader") >= 2 }, w)
	if ids := n.ledgerIDs(); len(ids) != 0 {
		t.Fatalf("ledger %v while no leader", ids)
	}
	n.b.mu.Lock()
	n.b.leader = true
	n.b.mu.Unlock()
	waitFor(t, "the alert to be committed", func() bool { return len(n.ledgerIDs()) == 1 }, w)
	waitFor(t, "the acknowledgement", func() bool { return strings.Contains(w.stdout.String(), "\n") }, w)
	var res api.AlertResponse
	if err := json.Unmarshal([]byte(strings.TrimSpace(w.stdout.String())), &res); err != nil || res.ID != idOf(t, d) || res.Duplicate {
		t.Fatalf("output %q (%v)", w.stdout.String(), err)
	}
	if code := w.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if ids := n.ledgerIDs(); !sameIDs(ids, idOf(t, d)) {
		t.Fatalf("ledger %v", ids)
	}
}

// With -addrs a node that is unreachable or knows no leader passes the
// alert to the next at once: no backoff until every node failed once.
func TestWatchAppArmorFailsOverToTheNextNode(t *testing.T) {
	cut := alertNode(t)
	cut.b.mu.Lock()
	cut.b.leader = false // cut off: answers no_leader
	cut.b.mu.Unlock()
	good := alertNode(t)
	dead := closedAddr(t)

	log := filepath.Join(t.TempDir(), "audit.log")
	d := denial(7, "/usr/sbin/named", "/bin/sh")
	appendLines(t, log, d)
	w := startWatch(t, good.roleEnv(t, "detector"), "-log", log, "-service", "dns", "-replica", "win-bind", "-from-start",
		"-addrs", dead+","+cut.addr+","+good.addr)
	waitFor(t, "the alert committed on the third node", func() bool { return len(good.ledgerIDs()) == 1 }, w)
	waitFor(t, "the acknowledgement", func() bool { return strings.Contains(w.stdout.String(), "committed") }, w)
	errs := w.stderr.String()
	if strings.Count(errs, "trying the next node") != 2 || strings.Contains(errs, "retry_in") || len(cut.ledgerIDs()) != 0 {
		t.Fatalf("want two failovers and no backoff; stderr:\n%s", errs)
	}

	// Every node failing: a full round, then the backoff.
	good.b.mu.Lock()
	good.b.leader = false
	good.b.mu.Unlock()
	appendLines(t, log, denial(8, "/usr/sbin/named", "/bin/sh"))
	waitFor(t, "a backoff after a full round", func() bool { return strings.Contains(w.stderr.String(), "retry_in") }, w)
	good.b.mu.Lock()
	good.b.leader = true
	good.b.mu.Unlock()
	waitFor(t, "the second alert committed", func() bool { return len(good.ledgerIDs()) == 2 }, w)
}

func TestWatchAppArmorAddrsErrors(t *testing.T) {
	n := alertNode(t)
	env := n.roleEnv(t, "detector")
	log := filepath.Join(t.TempDir(), "audit.log")
	appendLines(t, log)
	for _, c := range []struct{ addrs, want string }{
		{n.addr + "," + n.addr, "listed twice"},
		{n.addr + ",,", "an empty address"},
		{"ftp://x", "scheme must be http or https"},
	} {
		r := ars(t, env, "", "watch", "apparmor", "-log", log, "-service", "dns", "-replica", "win-bind", "-addrs", c.addrs)
		if r.Code != cli.ExitUsage || !strings.Contains(r.Stderr, c.want) {
			t.Errorf("-addrs %q: exit %d, stderr %q; want usage error with %q", c.addrs, r.Code, r.Stderr, c.want)
		}
	}
}

func TestFailsOver(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&api.NetworkError{Op: "POST /v1/alerts", Addr: "x", Err: errors.New("connection refused")}, true},
		{context.DeadlineExceeded, true},
		{&api.APIError{Status: 503, Code: api.CodeNoLeader}, true},
		{&api.APIError{Status: 503, Code: api.CodeUnavailable}, true},
		{&api.APIError{Status: 500, Code: api.CodeInternal}, true},
		{&api.APIError{Status: 429, Code: "rate_limited"}, false},
		{&api.APIError{Status: 409, Code: fsm.CodeStaleTerm}, false},
	} {
		if got := failsOver(c.err); got != c.want {
			t.Errorf("failsOver(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestWatchAppArmorRestartDedups(t *testing.T) {
	n := alertNode(t)
	env := n.roleEnv(t, "detector")
	log := filepath.Join(t.TempDir(), "audit.log")
	d1, d2 := denial(1, "/usr/sbin/named", "/bin/sh"), kernDenial(2, "/usr/sbin/named", "/etc/shadow")
	appendLines(t, log, d1, d2)

	w := startWatch(t, env, "-log", log, "-service", "dns", "-replica", "win-bind", "-from-start")
	waitFor(t, "two alerts", func() bool { return len(n.ledgerIDs()) == 2 }, w)
	if code := w.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}

	w = startWatch(t, env, "-log", log, "-service", "dns", "-replica", "win-bind", "-from-start")
	waitFor(t, "two duplicates", func() bool { return strings.Count(w.stdout.String(), "duplicate\t") == 2 }, w)
	if code := w.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if ids := n.ledgerIDs(); !sameIDs(ids, idOf(t, d1), idOf(t, d2)) {
		t.Fatalf("ledger after restart %v", ids)
	}
}

func TestWatchAppArmorRejections(t *testing.T) {
	n := alertNode(t)
	log := filepath.Join(t.TempDir(), "audit.log")
	appendLines(t, log, denial(1, "/usr/sbin/named", "/bin/sh"))

	// A permanent rejection drops the alert and goes on.
	w := startWatch(t, n.roleEnv(t, "detector"), "-log", log, "-service", "dns", "-replica", "no-such-replica", "-from-start")
	waitFor(t, "the drop", func() bool { return strings.Contains(w.stderr.String(), "alert rejected, dropped") }, w)
	if !strings.Contains(w.stderr.String(), "unknown_replica") {
		t.Errorf("drop does not say why:\n%s", w.stderr.String())
	}
	if code := w.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}

	// A token that may not post alerts stops the watcher.
	w = startWatch(t, n.roleEnv(t, "reader"), "-log", log, "-service", "dns", "-replica", "win-bind", "-from-start")
	select {
	case code := <-w.done:
		w.done <- code
		if errb := w.stderr.String(); code != cli.ExitFailed || !strings.Contains(errb, "ars: forbidden") {
			t.Fatalf("exit %d, stderr:\n%s", code, errb)
		}
	case <-time.After(watchWait):
		t.Fatal("watcher with a reader token did not stop")
	}
	if ids := n.ledgerIDs(); len(ids) != 0 {
		t.Fatalf("ledger %v", ids)
	}

	// Usage errors.
	det := n.roleEnv(t, "detector")
	ars(t, det, "", "watch", "apparmor", "-service", "dns", "-replica", "r").Fails(t, cli.ExitUsage, "-log is required")
	ars(t, det, "", "watch", "apparmor", "-log", log, "-replica", "r").Fails(t, cli.ExitUsage, "-service is required")
	ars(t, det, "", "watch", "apparmor", "-log", log, "-service", "dns").Fails(t, cli.ExitUsage, "-replica is required")
	ars(t, det, "", "watch", "apparmor", "-log", log, "-service", "dns", "-replica", "r", "-queue", "0").Fails(t, cli.ExitUsage, "-queue")
	ars(t, det, "", "watch", "apparmor", "-log", log, "-service", "dns", "-replica", "r", "extra").Fails(t, cli.ExitUsage, "usage")
	// An unreadable log is an error, not a wait.
	dir := t.TempDir()
	r := ars(t, det, "", "watch", "apparmor", "-log", dir, "-service", "dns", "-replica", "r", "-from-start")
	if want := "\nars: following the log: read " + dir + ": is a directory\n"; r.Code != cli.ExitFailed || !strings.HasSuffix(r.Stderr, want) {
		t.Fatalf("watching a directory: exit %d, stderr %q", r.Code, r.Stderr)
	}
}

// TestWatchQueueBoundsReading: while the node does not acknowledge, at
// most -queue alerts wait and the reader pauses instead of growing memory.
func TestWatchQueueBoundsReading(t *testing.T) {
	release := make(chan struct{})
	fake := &blockingPoster{release: release}
	log := filepath.Join(t.TempDir(), "audit.log")
	var lines []string
	for i := range 10 {
		lines = append(lines, denial(i+1, "/usr/sbin/named", fmt.Sprint("/bin/x", i)))
	}
	appendLines(t, log, lines...)
	stderr := &testutil.SyncBuffer{}
	w := &apparmorWatcher{clients: []alertPoster{fake}, names: []string{"fake"}, path: log, service: "dns", replica: "r", source: "apparmor", fromStart: true,
		poll: 10 * time.Millisecond, queue: 3, log: newTestLogger(stderr), out: &testutil.SyncBuffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.run(ctx) }()
	deadline := time.Now().Add(watchWait)
	for fake.calls() < 1 || !strings.Contains(stderr.String(), "alert queue full") {
		if time.Now().After(deadline) {
			t.Fatalf("queue never filled:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// One in delivery (unanswered), three queued, one held by the paused
	// reader: nothing else is posted meanwhile.
	if got := fake.calls(); got != 1 {
		t.Fatalf("%d posts while the first is unanswered", got)
	}
	close(release)
	for fake.calls() < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of 10 alerts posted:\n%s", fake.calls(), stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr.String(), "reading resumes") || !strings.Contains(stderr.String(), "committed=10") {
		t.Fatalf("log:\n%s", stderr.String())
	}
}

type blockingPoster struct {
	release chan struct{}
	mu      sync.Mutex
	n       int
}

func (b *blockingPoster) calls() int { b.mu.Lock(); defer b.mu.Unlock(); return b.n }

func (b *blockingPoster) PostAlert(ctx context.Context, req api.AlertRequest) (api.AlertResponse, error) {
	b.mu.Lock()
	b.n++
	b.mu.Unlock()
	select {
	case <-b.release:
		return api.AlertResponse{ID: req.ID, Service: req.Service, Replica: req.Replica, Kind: req.Kind, Index: 1}, nil
	case <-ctx.Done():
		return api.AlertResponse{}, ctx.Err()
	}
}

func TestClassifyAlertError(t *testing.T) {
	for _, c := range []struct {
		err  error
		want failure
	}{
		{&api.APIError{Status: 503, Code: api.CodeNoLeader}, failRetry},
		{&api.APIError{Status: 503, Code: api.CodeNotLeader}, failRetry},
		{&api.APIError{Status: 504, Code: api.CodeTimeout}, failRetry},
		{&api.APIError{Status: 500, Code: api.CodeInternal}, failRetry},
		{&api.APIError{Status: 429, Code: "slow_down"}, failRetry},
		{&api.NetworkError{Op: "POST /v1/alerts", Addr: "x", Err: errors.New("connection refused")}, failRetry},
		{fmt.Errorf("wrapped: %w", &api.APIError{Status: 401, Code: api.CodeUnauthorized}), failFatal},
		{&api.APIError{Status: 403, Code: api.CodeForbidden}, failFatal},
		{&api.APIError{Status: 404, Code: "unknown_service"}, failPermanent},
		{&api.APIError{Status: 400, Code: api.CodeInvalid}, failPermanent},
		{&api.APIError{Status: 413, Code: api.CodeTooLarge}, failPermanent},
		// An older leader's answer when leadership moved mid-commit:
		// nothing was committed, so the alert must be sent again.
		{&api.APIError{Status: 409, Code: fsm.CodeStaleTerm}, failRetry},
		{&api.APIError{Status: 409, Code: fsm.CodeStaleGeneration}, failPermanent},
	} {
		if got := classifyAlertError(c.err); got != c.want {
			t.Errorf("classify(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

func TestApparmorEvidence(t *testing.T) {
	line := "type=AVC msg=audit(1700000000.5:9): apparmor=\"DENIED\" operation=\"open\" profile=\"p\" name=2F746D700A78 pid=3 comm=\"c\"\x1dUID=\"root\" \xff"
	r, err := apparmor.Parse(line)
	if err != nil {
		t.Fatal(err)
	}
	ev := apparmorEvidence(r)
	want := `AppArmor "DENIED" operation="open" profile="p" name="/tmp\nx" comm="c" pid=3 audit=1700000000.5:9 time=2023-11-14T22:13:20.5Z` + "\n"
	if !strings.HasPrefix(ev, want) || !strings.Contains(ev, `\x1dUID="root" �`) {
		t.Fatalf("evidence %q", ev)
	}
	long, _ := apparmor.Parse(denial(1, "p", strings.Repeat("n", 3*watchEvidenceLine)))
	if ev := apparmorEvidence(long); len(ev) > watchEvidenceLine+600 || len(ev) > api.MaxAlertEvidenceBytes || !strings.HasSuffix(ev, "…") {
		t.Fatalf("long evidence: %d bytes", len(ev))
	}
}

func newTestLogger(w *testutil.SyncBuffer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }
