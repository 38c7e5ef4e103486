package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
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
