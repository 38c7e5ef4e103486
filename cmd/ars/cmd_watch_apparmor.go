package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/cmd/ars/internal/apparmor"
	"github.com/ars-project/ars/cmd/internal/cli"
	"github.com/ars-project/ars/fsm"
)

// watch apparmor settings.
const (
	// watchNoDeadline stands for "no -timeout": the dispatcher needs a
	// positive default, and a watcher runs until it is stopped.
	watchNoDeadline     = 100 * 365 * 24 * time.Hour
	watchDefaultQueue   = 256
	watchMaxQueue       = 1 << 16
	watchAttemptTimeout = 10 * time.Second
	// watchFailoverTimeout bounds one attempt when other nodes are there
	// to try (-addrs): a commit takes milliseconds, and a node cut off from
	// the others must not hold an exploit alert for long.
	watchFailoverTimeout = 2 * time.Second
	watchBackoffMin      = 100 * time.Millisecond
	watchBackoffMax      = 10 * time.Second
	// watchEvidenceLine bounds the raw log line quoted in the evidence.
	watchEvidenceLine = 8 << 10
)

func init() {
	app.Register(cli.Command{
		Name:    "watch apparmor",
		Group:   groupAttacks,
		Summary: "Follow an AppArmor audit log and post one exploit alert per denial",
		Help: `Follows -log like tail -F (from its end unless -from-start; across rotation
by rename and by truncation) and turns every AppArmor denial (apparmor="DENIED"
or "KILL", auditd or kernel/syslog format) into an exploit alert on
-service/-replica. The alert id is derived from the audit event (timestamp,
serial, profile, operation, name), so re-reading a log after a restart, or
reading the same event twice, records it only once.

Each alert is retried with backoff (100ms doubling to 10s) until a node
acknowledges it; a duplicate answer is an acknowledgement. With -addrs the
watcher knows several nodes: when the one it posts to does not answer
(unreachable, cut off, no leader known, 5xx) it tries the next at once, and
backs off only after every node failed once; each attempt then has 2 s, not
10 s. A detector bound to one node would otherwise lose its way to the
cluster with that node. Answers that no
retry can change (a 4xx such as unknown_service) are logged and the alert is
dropped; 401/403 (the token is not accepted) stop the watcher with exit 1.
Alerts are sent one at a time, in log order. Up to -queue alerts wait for
acknowledgement while the log is read on; when the queue is full, reading
pauses until the node acknowledges one (nothing is dropped: the lines wait
in the file).

Prints one line per acknowledged alert on stdout (-o json: one JSON object
per line) and logs to stderr. Runs until SIGINT/SIGTERM (exit 0), or for
-timeout if one is given (the default shown below, 100 years, means no
limit). Alerts still queued then are not sent; run again with -from-start
to send them (the ones already recorded are answered as duplicates).
Use a detector token (-token-file or ARS_HTTP_TOKEN_FILE).`,
		Timeout: watchNoDeadline,
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			logPath := fs.String("log", "", "audit log `file` to follow, e.g. /var/log/audit/audit.log or /var/log/kern.log (required)")
			service := fs.String("service", "", "`service` the replica belongs to (required)")
			replica := fs.String("replica", "", "`replica` this host runs (required)")
			profile := fs.String("profile", "", "only denials of this `profile` and its children (PROFILE//…); default all")
			fromStart := fs.Bool("from-start", false, "read the log from its beginning, not only new lines")
			source := fs.String("source", "apparmor", "detector `name` recorded with each alert")
			poll := fs.Duration("poll", apparmor.DefaultPoll, "how often to look for new lines, rotation and truncation")
			queue := fs.Int("queue", watchDefaultQueue, "alerts waiting for acknowledgement before reading pauses")
			addrs := fs.String("addrs", "", "comma-separated node API `addresses` to post to, in order of preference; the next is tried when one fails (default: -addr alone)")
			return func(ctx context.Context, e *cli.Env, args []string) error {
				switch {
				case *logPath == "":
					return cli.UsageErrorf("-log is required")
				case *service == "":
					return cli.UsageErrorf("-service is required")
				case *replica == "":
					return cli.UsageErrorf("-replica is required")
				case *source == "":
					return cli.UsageErrorf("-source must not be empty")
				case *poll < apparmor.MinPoll || *poll > apparmor.MaxPoll:
					return cli.UsageErrorf("-poll %s: must be from %s to %s", *poll, apparmor.MinPoll, apparmor.MaxPoll)
				case *queue < 1 || *queue > watchMaxQueue:
					return cli.UsageErrorf("-queue %d: must be from 1 to %d", *queue, watchMaxQueue)
				}
				list := []string{e.Addr()}
				if *addrs != "" {
					list = strings.Split(*addrs, ",")
				}
				var clients []alertPoster
				var names []string
				for _, a := range list {
					if *addrs != "" && strings.TrimSpace(a) == "" {
						return cli.UsageErrorf("-addrs %q: an empty address", *addrs)
					}
					c, err := e.ClientAt(strings.TrimSpace(a))
					if err != nil {
						return err
					}
					if slices.Contains(names, c.Addr()) {
						return cli.UsageErrorf("-addrs %q: %s listed twice", *addrs, c.Addr())
					}
					clients, names = append(clients, c), append(names, c.Addr())
				}
				w := &apparmorWatcher{
					clients: clients, names: names, path: *logPath, service: *service, replica: *replica, profile: *profile,
					source: *source, fromStart: *fromStart, poll: *poll, queue: *queue,
					log: slog.New(slog.NewTextHandler(e.Stderr, nil)).With("watch", "apparmor"),
					out: e.Stdout, json: e.JSONOutput(),
				}
				return w.run(ctx)
			}
		},
	})
}

// alertPoster is what the watcher needs of api.Client.
type alertPoster interface {
	PostAlert(ctx context.Context, req api.AlertRequest) (api.AlertResponse, error)
}

type apparmorWatcher struct {
	clients                           []alertPoster // the nodes, in order of preference
	names                             []string      // their addresses, for the log
	cur                               int           // the node posted to now
	path, service, replica, profile   string
	source                            string
	fromStart                         bool
	poll                              time.Duration
	queue                             int
	log                               *slog.Logger
	out                               io.Writer
	json                              bool
	committed, duplicates, dropped    int
	backoffMin, backoffMax, attemptTO time.Duration // zero: the defaults
}

type pendingAlert struct {
	req api.AlertRequest
	rec apparmor.Record
}

// run follows the log on one goroutine and delivers alerts on this one
// until ctx ends (nil), a fatal answer arrives or the log cannot be read.
func (w *apparmorWatcher) run(ctx context.Context) error {
	queue := make(chan pendingAlert, w.queue)
	rctx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	readDone := make(chan error, 1)
	go func() {
		readDone <- apparmor.Follow(rctx, w.path, apparmor.FollowOptions{FromStart: w.fromStart, Poll: w.poll, Logger: w.log},
			func(line string) error { return w.enqueue(rctx, queue, line) })
	}()
	w.log.Info("watching", "log", w.path, "service", w.service, "replica", w.replica,
		"profile", cmp.Or(w.profile, "(all)"), "from_start", w.fromStart, "queue", w.queue)

	var err error
	inFlight := 0
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case rerr := <-readDone:
			readDone <- rerr
			if ctx.Err() == nil {
				err = fmt.Errorf("following the log: %w", rerr)
			}
			break loop
		case p := <-queue:
			if derr := w.deliver(ctx, p); derr != nil {
				if ctx.Err() == nil {
					err = derr
				} else {
					inFlight = 1
				}
				break loop
			}
		}
	}
	stopReading()
	<-readDone
	w.log.Info("stopped", "committed", w.committed, "duplicates", w.duplicates, "dropped", w.dropped,
		"unacknowledged", len(queue)+inFlight)
	return err
}

// enqueue turns a log line into a queued alert. It blocks only while the
// queue is full.
func (w *apparmorWatcher) enqueue(ctx context.Context, queue chan<- pendingAlert, line string) error {
	rec, err := apparmor.Parse(line)
	switch {
	case errors.Is(err, apparmor.ErrNotAppArmor), errors.Is(err, apparmor.ErrNotDenial):
		return nil
	case err != nil:
		w.log.Warn("skipping an unreadable AppArmor record", "error", err.Error())
		return nil
	}
	if w.profile != "" && rec.Profile != w.profile && !strings.HasPrefix(rec.Profile, w.profile+"//") {
		return nil
	}
	p := pendingAlert{rec: rec, req: api.AlertRequest{ID: rec.ID(), Service: w.service, Replica: w.replica,
		Kind: fsm.KindExploit, Source: w.source, Evidence: apparmorEvidence(rec)}}
	select {
	case queue <- p:
		return nil
	default:
	}
	w.log.Warn("alert queue full: reading of the log pauses until the node acknowledges an alert", "queued", cap(queue))
	select {
	case queue <- p:
		w.log.Info("alert queue has room again: reading resumes")
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// failure classes of a PostAlert error.
type failure int

const (
	failRetry     failure = iota // try again later
	failPermanent                // this alert can never succeed: drop it
	failFatal                    // no alert can succeed: stop
)

// classifyAlertError: network errors, timeouts, 5xx (not_leader,
// no_leader, unavailable …), 408/429 and 409 stale_term (leadership moved
// while the alert was being committed: nothing was committed; current
// nodes answer 503 for it) are retried; 401 and 403 are fatal; any other
// 4xx is permanent.
func classifyAlertError(err error) failure {
	var ae *api.APIError
	if !errors.As(err, &ae) {
		return failRetry
	}
	switch {
	case ae.Code == api.CodeNotLeader, ae.Code == api.CodeNoLeader, ae.Code == api.CodeTimeout,
		ae.Code == api.CodeUnavailable, ae.Status >= 500,
		ae.Status == http.StatusRequestTimeout, ae.Status == http.StatusTooManyRequests,
		ae.Code == fsm.CodeStaleTerm:
		return failRetry
	case ae.Status == http.StatusUnauthorized, ae.Status == http.StatusForbidden:
		return failFatal
	case ae.Status >= 400:
		return failPermanent
	}
	return failRetry
}

// failsOver reports an error that says nothing about the alert, only
// about the node: unreachable or timed out, no leader known to it, or a
// server error. Another node may do better at once. A 429 does not move:
// the rate limit is the caller's, on every node.
func failsOver(err error) bool {
	var ae *api.APIError
	if !errors.As(err, &ae) {
		return true
	}
	return ae.Code == api.CodeNotLeader || ae.Code == api.CodeNoLeader || ae.Code == api.CodeTimeout ||
		ae.Code == api.CodeUnavailable || ae.Status >= 500
}

// deliver posts one alert until it is acknowledged or dropped. It returns
// an error only for a fatal answer or when ctx ends.
func (w *apparmorWatcher) deliver(ctx context.Context, p pendingAlert) error {
	backoff := cmp.Or(w.backoffMin, watchBackoffMin)
	maxBackoff := cmp.Or(w.backoffMax, watchBackoffMax)
	attemptTO := cmp.Or(w.attemptTO, watchAttemptTimeout)
	if len(w.clients) > 1 {
		attemptTO = min(attemptTO, watchFailoverTimeout)
	}
	failed := 0 // nodes that failed in a row since the last wait
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, attemptTO)
		res, err := w.clients[w.cur].PostAlert(actx, p.req)
		cancel()
		if err == nil {
			return w.acknowledged(res, p)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch classifyAlertError(err) {
		case failFatal:
			return fmt.Errorf("alert %s: %w", p.req.ID, err)
		case failPermanent:
			w.dropped++
			w.log.Error("alert rejected, dropped", "id", p.req.ID, "profile", p.rec.Profile,
				"operation", p.rec.Operation, "error", err.Error())
			return nil
		}
		node := w.names[w.cur]
		if len(w.clients) > 1 && failsOver(err) {
			w.cur = (w.cur + 1) % len(w.clients)
			if failed++; failed < len(w.clients) {
				w.log.Warn("alert not acknowledged, trying the next node", "id", p.req.ID, "attempt", attempt,
					"node", node, "next", w.names[w.cur], "error", err.Error())
				continue
			}
		}
		failed = 0
		wait := backoff/2 + rand.N(backoff/2+1)
		w.log.Warn("alert not acknowledged, retrying", "id", p.req.ID, "attempt", attempt, "node", node,
			"retry_in", wait.Round(time.Millisecond), "error", err.Error())
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

func (w *apparmorWatcher) acknowledged(res api.AlertResponse, p pendingAlert) error {
	result := "committed"
	if res.Duplicate {
		result = "duplicate"
		w.duplicates++
	} else {
		w.committed++
	}
	if w.json {
		b, err := json.Marshal(res)
		if err != nil {
			return fmt.Errorf("encoding output: %w", err)
		}
		_, err = w.out.Write(append(b, '\n'))
		return err
	}
	line := fmt.Sprintf("%s\t%s\t%s/%s\t%s %q profile %q", result, res.ID, res.Service, res.Replica, p.rec.Operation, p.rec.Name, p.rec.Profile)
	if !res.Duplicate {
		line += fmt.Sprintf("\tindex %d", res.Index)
	}
	_, err := fmt.Fprintln(w.out, line)
	return err
}

// apparmorEvidence is a summary of the denial (each value quoted and cut
// at 256 bytes) followed by the log line (control characters escaped, at
// most watchEvidenceLine bytes): well under MaxAlertEvidenceBytes.
func apparmorEvidence(r apparmor.Record) string {
	q := func(s string) string {
		if len(s) > 256 {
			s = strings.ToValidUTF8(s[:256], "") + "…"
		}
		return strconv.Quote(s)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "AppArmor %s operation=%s profile=%s", q(r.Type), q(r.Operation), q(r.Profile))
	if r.Name != "" {
		fmt.Fprintf(&b, " name=%s", q(r.Name))
	}
	if r.Comm != "" {
		fmt.Fprintf(&b, " comm=%s", q(r.Comm))
	}
	if r.PID != 0 {
		fmt.Fprintf(&b, " pid=%d", r.PID)
	}
	if r.DeniedMask != "" {
		fmt.Fprintf(&b, " denied_mask=%s", q(r.DeniedMask))
	}
	fmt.Fprintf(&b, " audit=%s time=%s\n", r.Stamp, r.Time.Format(time.RFC3339Nano))
	raw := strings.ToValidUTF8(strings.TrimRight(r.Raw, "\r\n"), "\uFFFD")
	n := 0
	for _, c := range raw {
		if n >= watchEvidenceLine {
			b.WriteString("…")
			break
		}
		if unicode.IsControl(c) && c != '\t' {
			n += 4
			fmt.Fprintf(&b, "\\x%02x", c)
			continue
		}
		n += len(string(c))
		b.WriteRune(c)
	}
	return b.String()
}
