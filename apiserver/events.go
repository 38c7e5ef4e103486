package apiserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/cluster"
)

// Event stream limits.
const (
	// MaxStreamDuration ends an event stream; the reader resumes from the
	// last index it got (a stream never holds a connection for good).
	MaxStreamDuration = time.Hour
	// StreamHeartbeat is how often a following stream with nothing new
	// sends a heartbeat line (proxies and readers see it is alive).
	StreamHeartbeat = 15 * time.Second
	// StreamWriteTimeout bounds each write of a stream: a reader that does
	// not read is cut off, and resumes from its last index.
	StreamWriteTimeout = 10 * time.Second
	// MaxStreamsPerCaller and MaxStreams bound the open event streams.
	MaxStreamsPerCaller = 4
	MaxStreams          = 64
	eventBatch          = 256
)

// streamLimiter counts the open event streams per caller.
type streamLimiter struct {
	mu    sync.Mutex
	total int
	by    map[string]int
}

func newStreamLimiter() *streamLimiter { return &streamLimiter{by: map[string]int{}} }

func (l *streamLimiter) acquire(caller string) (release func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.by[caller] >= MaxStreamsPerCaller:
		return nil, &requestError{status: http.StatusTooManyRequests, code: api.CodeRateLimited,
			msg: fmt.Sprintf("%q has %d event streams open, at most %d allowed", caller, l.by[caller], MaxStreamsPerCaller)}
	case l.total >= MaxStreams:
		return nil, &requestError{status: http.StatusTooManyRequests, code: api.CodeRateLimited,
			msg: fmt.Sprintf("this node has %d event streams open, at most %d allowed", l.total, MaxStreams)}
	}
	l.by[caller]++
	l.total++
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.total--
		if l.by[caller]--; l.by[caller] == 0 {
			delete(l.by, caller)
		}
	}, nil
}

// eventsQuery is a parsed GET /v1/events.
type eventsQuery struct {
	after   uint64
	hasFrom bool
	tail    int
	hasTail bool
	service string
	follow  bool
}

func parseEventsQuery(r *http.Request) (eventsQuery, error) {
	var q eventsQuery
	vals := r.URL.Query()
	for k, vs := range vals {
		if !slices.Contains([]string{"after", "tail", "service", "follow"}, k) {
			return q, invalidf("unknown query parameter %q (want after, tail, service, follow)", k)
		}
		if len(vs) > 1 {
			return q, invalidf("query parameter %q given %d times", k, len(vs))
		}
	}
	if v := vals.Get("after"); vals.Has("after") {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return q, invalidf("after: %q is not a log index", v)
		}
		q.after, q.hasFrom = n, true
	}
	if v := vals.Get("tail"); vals.Has("tail") {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > cluster.EventLogSize {
			return q, invalidf("tail: %q is not a count of events from 0 to %d", v, cluster.EventLogSize)
		}
		if q.hasFrom {
			return q, invalidf("after and tail: give one of them")
		}
		q.tail, q.hasTail = n, true
	}
	if vals.Has("service") {
		q.service = vals.Get("service")
		if err := checkLine(q.service, api.MaxAlertNameBytes); err != nil || q.service == "" {
			return q, invalidf("service: a service name, got %q", q.service)
		}
	}
	if v := vals.Get("follow"); vals.Has("follow") {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return q, invalidf("follow: %q is not true or false", v)
		}
		q.follow = b
	}
	return q, nil
}

// handleEvents streams the commands this node applied, as newline-
// delimited JSON (api.Event), from the index after (default: the oldest
// held; tail=N: the last N). With follow it keeps streaming as commands
// are applied, with a heartbeat line when nothing happens, until the
// reader goes, a write times out or MaxStreamDuration passes; the reader
// resumes with after= the last index it got, on any node. Events no longer
// held answer 410 events_gone (before the stream) or end the stream with
// a line of type "gone".
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) error {
	q, err := parseEventsQuery(r)
	if err != nil {
		return err
	}
	caller := "dev"
	if p, ok := PrincipalFromContext(r.Context()); ok {
		caller = p.Name
	}
	release, err := s.streams.acquire(caller)
	if err != nil {
		return err
	}
	defer release()
	after := q.after
	if !q.hasFrom {
		oldest, last := s.b.EventRange()
		after = oldest
		if q.hasTail {
			after = max(oldest, last-min(last, uint64(q.tail)))
		}
	}
	events, more, err := s.b.Events(after, eventBatch)
	var gone *cluster.EventsGoneError
	if errors.As(err, &gone) {
		return &requestError{status: http.StatusGone, code: api.CodeEventsGone, msg: err.Error()}
	}
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	write := func(e api.Event) error {
		_ = rc.SetWriteDeadline(time.Now().Add(StreamWriteTimeout))
		return enc.Encode(e)
	}
	flush := func() error {
		_ = rc.SetWriteDeadline(time.Now().Add(StreamWriteTimeout))
		return rc.Flush()
	}
	ctx := r.Context()
	end := time.NewTimer(MaxStreamDuration)
	defer end.Stop()
	beat := time.NewTicker(StreamHeartbeat)
	defer beat.Stop()
	for {
		for _, e := range events {
			after = e.Index
			if q.service != "" && e.Service != q.service {
				continue
			}
			if err := write(wireEvent(e)); err != nil {
				return nil // the reader went or stopped reading: it resumes
			}
		}
		if err := flush(); err != nil {
			return nil
		}
		if len(events) == eventBatch {
			events, more, err = s.b.Events(after, eventBatch)
		} else if !q.follow {
			return nil
		} else {
			select {
			case <-ctx.Done():
				return nil
			case <-end.C:
				return nil
			case <-beat.C:
				_, last := s.b.EventRange()
				if err := write(api.Event{Index: last, Type: api.EventHeartbeat}); err != nil {
					return nil
				}
				events = nil
				continue
			case <-more:
			}
			events, more, err = s.b.Events(after, eventBatch)
		}
		if err != nil {
			// Fell behind the events held (a snapshot replaced the state):
			// say so in the stream, which ends; the reader starts again.
			_ = write(api.Event{Index: after, Type: api.EventGone, Error: err.Error()})
			_ = flush()
			return nil
		}
	}
}

// wireEvent is the API's form of an event.
func wireEvent(e cluster.Event) api.Event {
	ev := api.Event{Index: e.Index, Term: e.Term, Type: string(e.Type), Service: e.Service,
		Refused: e.Refused, Error: e.Error, Body: e.Body}
	ev.Detail = ev.Describe()
	return ev
}
