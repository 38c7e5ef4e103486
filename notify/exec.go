package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/ars-project/ars/cluster"
)

// ExecConfig runs an executable once per event: Path with Args, then the
// event's type, service ("" for events of no service) and index, the
// event's JSON on stdin. It is killed (with its process group) after
// Timeout (default DefaultExecTimeout). It is run once: a failure is
// logged and counted, not retried.
type ExecConfig struct {
	Path    string
	Args    []string
	Timeout time.Duration
	// Queue bounds the events waiting for the executable (default
	// DefaultQueue).
	Queue int
}

// stderrLimit is how much of an executable's stderr the log shows.
const stderrLimit = 512

type execSink struct {
	path    string
	args    []string
	timeout time.Duration
}

func newExecSink(c ExecConfig) (*sink, error) {
	if c.Path == "" {
		return nil, errors.New("exec: path required")
	}
	if c.Timeout < 0 || c.Queue < 0 {
		return nil, errors.New("exec: timeout and queue must not be negative")
	}
	d := &execSink{path: c.Path, args: append([]string(nil), c.Args...), timeout: c.Timeout}
	if d.timeout == 0 {
		d.timeout = DefaultExecTimeout
	}
	q := c.Queue
	if q == 0 {
		q = DefaultQueue
	}
	return &sink{kind: "exec", d: d, queue: q, maxAttempts: 1, backoff: DefaultBackoff, maxBackoff: DefaultMaxBackoff}, nil
}

// deliver runs the executable. Its environment holds only PATH: the
// agent's own environment may hold secrets (a vCenter password).
func (x *execSink) deliver(ctx context.Context, e cluster.Event, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, x.timeout)
	defer cancel()
	args := append(append([]string(nil), x.args...), string(e.Type), e.Service, strconv.FormatUint(e.Index, 10))
	cmd := exec.CommandContext(ctx, x.path, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	cmd.Stdin = bytes.NewReader(body)
	var stderr limitedBuffer
	cmd.Stderr = &stderr
	killGroup(cmd)
	// A child that keeps stderr open does not hold the delivery past the
	// timeout.
	cmd.WaitDelay = time.Second
	start := time.Now()
	err := cmd.Run()
	switch {
	case err == nil:
		return nil
	case ctx.Err() == context.DeadlineExceeded:
		return fmt.Errorf("%s killed after the timeout of %s%s", x.path, x.timeout, stderr.summary())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return fmt.Errorf("%s: %s after %s%s", x.path, ee.ProcessState, time.Since(start).Round(time.Millisecond), stderr.summary())
	}
	return fmt.Errorf("%s: %w", x.path, err)
}

// limitedBuffer keeps the first stderrLimit bytes written to it.
type limitedBuffer struct {
	b         bytes.Buffer
	truncated bool
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	n := len(p) // the rest is read and discarded, so the writer never blocks
	if room := stderrLimit - l.b.Len(); room < len(p) {
		l.truncated = true
		p = p[:max(room, 0)]
	}
	l.b.Write(p)
	return n, nil
}

// summary is ": stderr: ..." (one line, bounded), or "" when it was empty.
func (l *limitedBuffer) summary() string {
	s := strings.Join(strings.Fields(strings.ToValidUTF8(l.b.String(), "?")), " ")
	if s == "" {
		return ""
	}
	if l.truncated {
		s += " …"
	}
	return "; stderr: " + strconv.Quote(s)
}
