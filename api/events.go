package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Event is one line of GET /v1/events: a committed command as the node
// applied it (the same on every node for the same index), or a line of
// the stream itself (Type EventHeartbeat or EventGone, Index the node's
// newest event or the last one sent).
type Event struct {
	Index   uint64 `json:"index"`
	Term    uint64 `json:"term,omitempty"`
	Type    string `json:"type"` // a command type ("switch", "alert", ...) or a stream line
	Service string `json:"service,omitempty"`
	// Refused is the state machine's error code when the command changed
	// nothing, Error its message.
	Refused string          `json:"refused,omitempty"`
	Error   string          `json:"error,omitempty"`
	Body    json.RawMessage `json:"body,omitempty"`
	// Detail is Describe as the node that sent the event wrote it (the
	// status page shows it).
	Detail string `json:"detail,omitempty"`
}

// Stream lines that are not commands.
const (
	// EventHeartbeat: nothing new for a while; the stream is alive.
	EventHeartbeat = "heartbeat"
	// EventGone: the reader fell behind what the node holds; the stream
	// ends and the reader starts again (Error says from where).
	EventGone = "gone"
)

// EventsQuery selects events: those after the index After (when HasAfter;
// otherwise the oldest held, or the last Tail when Tail > 0), of Service
// ("" = every service); Follow keeps the stream open.
type EventsQuery struct {
	After    uint64
	HasAfter bool
	Tail     int
	Service  string
	Follow   bool
}

// Events reads GET /v1/events and calls fn for every line, heartbeats
// included, until the stream ends, ctx ends or fn returns an error (which
// Events returns).
func (c *Client) Events(ctx context.Context, q EventsQuery, fn func(Event) error) error {
	v := url.Values{}
	switch {
	case q.HasAfter:
		v.Set("after", strconv.FormatUint(q.After, 10))
	case q.Tail > 0:
		v.Set("tail", strconv.Itoa(q.Tail))
	}
	if q.Service != "" {
		v.Set("service", q.Service)
	}
	if q.Follow {
		v.Set("follow", "true")
	}
	path := "/v1/events"
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	req, err := c.newRequest(ctx, http.MethodGet, path, nil, "")
	if err != nil {
		return err
	}
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), maxResponseBytes)
	for sc.Scan() {
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("client: GET %s: decoding event: %w", path, err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return &NetworkError{Op: "GET " + path, Addr: c.Addr(), Err: err}
	}
	return nil
}

// Describe says in a few words what an event's command did, from its
// body, for people ("" for a type it does not know). The CLI's events
// and the status page print it.
func (ev Event) Describe() string {
	var b map[string]any
	if err := json.Unmarshal(ev.Body, &b); err != nil {
		return ""
	}
	str := func(k string) string {
		if v, ok := b[k].(string); ok {
			return v
		}
		return ""
	}
	or := func(s, alt string) string {
		if s == "" {
			return alt
		}
		return s
	}
	switch ev.Type {
	case "service.apply":
		return "spec applied"
	case "service.delete":
		return "deleted"
	case "switch":
		s := fmt.Sprintf("%s -> %s (%s", or(str("from"), "the active"), or(str("to"), "the standby"), str("reason"))
		if m := str("mode"); m != "" {
			s += ", " + m
		}
		if id := str("alert_id"); id != "" {
			s += ", alert " + id
		}
		return s + ")"
	case "switch.done":
		return fmt.Sprintf("switch of generation %v done", b["generation"])
	case "replica.role":
		s := str("replica") + ": " + str("action")
		if r := str("reason"); r != "" {
			s += " (" + r + ")"
		}
		return s
	case "alert":
		return fmt.Sprintf("alert %s: %s on %s from %s", str("id"), str("kind"), str("replica"), or(str("source"), "-"))
	case "alert.outcome":
		return fmt.Sprintf("alert %s: %s", str("id"), str("outcome"))
	case "notify.cursor":
		return fmt.Sprintf("notification sink %s handled the events up to %v", str("sink"), b["index"])
	case "leader":
		return fmt.Sprintf("%s leads (term %d)", str("node"), ev.Term)
	case "member":
		s := str("node") + ": " + str("status")
		if v, _ := b["voter"].(bool); v {
			s += ", voter"
		} else {
			s += ", not a voter"
		}
		return s
	case "verdict":
		s := fmt.Sprintf("dos verdict on %s", str("replica"))
		if d, ok := b["detection_ms"].(float64); ok {
			s += fmt.Sprintf(" (detection %.0f ms", d)
			if n, ok := b["confirmations"].(float64); ok && n > 0 {
				s += fmt.Sprintf(", confirmed by %.0f", n)
			}
			s += ")"
		}
		return s + ": " + str("outcome")
	case "switch.request":
		return fmt.Sprintf("switch request %s to %s%s", str("id"), or(str("to"), "any replica"),
			strings.TrimSuffix(" ("+str("reason")+")", " ()"))
	}
	return ""
}
