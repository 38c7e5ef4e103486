package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// MaxAttack bounds how long an attack on an implementation lasts.
const MaxAttack = 10 * time.Minute

// attacks holds the implementation-wide DoS attacks in force: every
// replica of an attacked implementation is wedged as soon as it serves
// (the Mirror linked it), until the attack's end.
type attacks struct {
	mu    sync.Mutex
	until map[string]time.Time // impl -> end of the attack
}

// served wedges the linked replicas whose implementation is under attack.
// It runs after every change the Mirror applied.
func (a *attacks) served(l *Lab, linked []string) {
	a.mu.Lock()
	now := time.Now()
	var hit []string
	for _, name := range linked {
		r, ok := l.lookup(name)
		if !ok {
			continue
		}
		if end, ok := a.until[r.Impl]; ok && now.Before(end) {
			hit = append(hit, name)
		}
	}
	a.mu.Unlock()
	for _, name := range hit {
		if err := l.record(name, "dos", l.wedge(name)); err != nil {
			l.log.Warn("lab: wedging an attacked replica failed", "replica", name, "err", err)
		} else {
			l.log.Info("lab: attacked implementation serves; wedged", "replica", name)
		}
	}
}

func (a *attacks) start(impl string, d time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.until == nil {
		a.until = map[string]time.Time{}
	}
	a.until[impl] = time.Now().Add(d)
}

// active lists the implementations under attack now.
func (a *attacks) active() map[string]time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]time.Time{}
	for impl, end := range a.until {
		if time.Now().Before(end) {
			out[impl] = end
		}
	}
	return out
}

func (a *attacks) stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.until = nil
}

func (l *Lab) lookup(name string) (Replica, bool) {
	i := slices.IndexFunc(l.cfg.Replicas, func(r Replica) bool { return r.Name == name })
	if i < 0 {
		return Replica{}, false
	}
	return l.cfg.Replicas[i], true
}

// DoSImpl attacks every replica of impl for d (at most MaxAttack): each
// one stops answering as soon as it serves, the one serving now at once.
// It returns the replicas wedged now.
func (l *Lab) DoSImpl(impl string, d time.Duration) ([]string, error) {
	if d <= 0 || d > MaxAttack {
		return nil, badRequest("attack duration %s: want more than 0 and at most %s", d, MaxAttack)
	}
	found := false
	for _, r := range l.cfg.Replicas {
		found = found || r.Impl == impl
	}
	if !found {
		return nil, badRequest("no replica runs implementation %q", impl)
	}
	l.attacks.start(impl, d)
	var now []string
	for _, name := range l.linked() {
		if r, _ := l.lookup(name); r.Impl == impl {
			now = append(now, name)
		}
	}
	l.attacks.served(l, now)
	return now, nil
}

// auditSerial numbers the audit records the lab writes, so that two
// exploits in the same millisecond are two events.
var auditSerial atomic.Uint64

// Exploit appends an AppArmor denial, as auditd writes it when a confined
// server tries to run a shell, to the replica's audit log: the replica's
// `ars watch apparmor` turns it into an exploit alert. It returns the line.
func (l *Lab) Exploit(replica string) (string, error) {
	r, ok := l.lookup(replica)
	if !ok {
		return "", badRequest("no replica %q", replica)
	}
	prog := Implementations[r.Impl]
	now := time.Now()
	line := fmt.Sprintf(`type=AVC msg=audit(%d.%03d:%d): apparmor="DENIED" operation="exec" class="file" profile="/usr/sbin/%s" name="/usr/bin/dash" pid=%d comm="%s" requested_mask="x" denied_mask="x" fsuid=0 ouid=0`+"\n",
		now.Unix(), now.Nanosecond()/1e6, 1000+auditSerial.Add(1), prog, os.Getpid(), prog)
	path := l.AuditLog(replica)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", fmt.Errorf("lab: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return "", fmt.Errorf("lab: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteString(line); err != nil {
		return "", fmt.Errorf("lab: %w", err)
	}
	return line, l.record(replica, "exploit", nil)
}
