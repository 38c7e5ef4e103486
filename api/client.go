package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ars-project/ars/fsm"
)

// DefaultAPIPort is the API port assumed when an address has none.
const DefaultAPIPort = "7500"

const maxResponseBytes = 64 << 20

// Client talks to one node's API. It is safe for concurrent use. Timeouts
// come from the context of each call.
type Client struct {
	base  *url.URL
	token string
	hc    *http.Client
}

// ClientOption changes how a Client connects.
type ClientOption func(*http.Transport)

// WithDialContext makes the client open its connections with dial, for
// example from inside a network namespace (the lab's client).
func WithDialContext(dial func(ctx context.Context, network, addr string) (net.Conn, error)) ClientOption {
	return func(tr *http.Transport) { tr.DialContext = dial }
}

// NewClient returns a client for addr: "host:port" or "host" (HTTPS on
// port 7500 assumed), "https://host:port[/prefix]" or "http://…". token
// (may be empty for node-certificate callers) is sent as a bearer token.
// tlsCfg (from ClientTLS) is used for https; nil means Go's defaults
// (system roots, no client certificate).
func NewClient(addr, token string, tlsCfg *tls.Config, opts ...ClientOption) (*Client, error) {
	base, err := parseBaseURL(addr)
	if err != nil {
		return nil, err
	}
	if strings.ContainsAny(token, "\r\n") {
		return nil, errors.New("client: token contains a line break")
	}
	tr := &http.Transport{
		Proxy:                 nil, // management traffic never goes through a proxy
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	if tlsCfg != nil {
		tr.TLSClientConfig = tlsCfg.Clone()
	}
	for _, o := range opts {
		o(tr)
	}
	return &Client{base: base, token: strings.TrimSpace(token), hc: &http.Client{
		Transport: tr,
		// Never follow redirects: they could carry the token elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}, nil
}

func parseBaseURL(addr string) (*url.URL, error) {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return nil, errors.New("client: empty node address")
	}
	if !strings.Contains(addr, "://") {
		host := addr
		if _, _, err := net.SplitHostPort(addr); err != nil {
			host = net.JoinHostPort(strings.Trim(addr, "[]"), DefaultAPIPort)
		}
		addr = "https://" + host
	}
	u, err := url.Parse(addr)
	if err != nil {
		return nil, fmt.Errorf("client: bad node address %q: %w", addr, err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, fmt.Errorf("client: bad node address %q: scheme must be https or http", addr)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("client: bad node address %q: no host", addr)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("client: bad node address %q: only scheme, host, port and path are allowed", addr)
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host, Path: strings.TrimSuffix(u.Path, "/")}, nil
}

// Addr is the node's base URL.
func (c *Client) Addr() string { return c.base.String() }

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader, contentType string) (*http.Request, error) {
	u := *c.base
	p, query, _ := strings.Cut(path, "?")
	u.Path += p
	u.RawQuery = query
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("client: building request %s %s: %w", method, path, err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "ars-client")
	return req, nil
}

// send performs the request; a non-2xx answer becomes an *APIError and a
// transport failure a *NetworkError. On success the caller closes the body.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	op := req.Method + " " + strings.TrimPrefix(req.URL.Path, c.base.Path)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, &NetworkError{Op: op, Addr: c.Addr(), Err: unwrapURLError(err)}
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, decodeAPIError(resp)
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func decodeAPIError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var body struct {
		Error *APIError `json:"error"`
	}
	if json.Unmarshal(data, &body) == nil && body.Error != nil && body.Error.Code != "" {
		body.Error.Status = resp.StatusCode
		return body.Error
	}
	msg := strings.TrimSpace(string(data))
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	if msg == "" || strings.HasPrefix(msg, "<") {
		msg = fmt.Sprintf("HTTP %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	return &APIError{Status: resp.StatusCode, Code: codeForStatus(resp.StatusCode), Message: msg}
}

// doJSON sends a request and decodes a JSON answer into out (if non-nil).
func (c *Client) doJSON(ctx context.Context, method, path string, in any, out any) error {
	var body io.Reader
	ct := ""
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("client: encoding request: %w", err)
		}
		body, ct = bytes.NewReader(data), "application/json"
	}
	return c.doRaw(ctx, method, path, body, ct, out)
}

func (c *Client) doRaw(ctx context.Context, method, path string, body io.Reader, ct string, out any) error {
	req, err := c.newRequest(ctx, method, path, body, ct)
	if err != nil {
		return err
	}
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return &NetworkError{Op: req.Method + " " + path, Addr: c.Addr(), Err: fmt.Errorf("reading response: %w", err)}
	}
	if len(data) > maxResponseBytes {
		return fmt.Errorf("client: %s %s: response larger than %d bytes", method, path, maxResponseBytes)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("client: %s %s: decoding response: %w", method, path, err)
	}
	return nil
}

// Metrics returns the node's Prometheus metrics (GET /metrics) in the
// text exposition format.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	req, err := c.newRequest(ctx, http.MethodGet, "/metrics", nil, "")
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := c.send(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return "", &NetworkError{Op: "GET /metrics", Addr: c.Addr(), Err: fmt.Errorf("reading response: %w", err)}
	}
	if len(data) > maxResponseBytes {
		return "", fmt.Errorf("client: GET /metrics: response larger than %d bytes", maxResponseBytes)
	}
	return string(data), nil
}

// Status returns the node's view of the cluster.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.doJSON(ctx, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}

// StatusDigest is Status with the state machine's applied index and state
// digest (GET /v1/status?digest=1).
func (c *Client) StatusDigest(ctx context.Context) (Status, error) {
	var st Status
	err := c.doJSON(ctx, http.MethodGet, "/v1/status?digest=1", nil, &st)
	return st, err
}

// Members lists the nodes known to gossip.
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	var ms []Member
	err := c.doJSON(ctx, http.MethodGet, "/v1/members", nil, &ms)
	return ms, err
}

// Peers lists the Raft configuration.
func (c *Client) Peers(ctx context.Context) ([]Peer, error) {
	var ps []Peer
	err := c.doJSON(ctx, http.MethodGet, "/v1/raft/peers", nil, &ps)
	return ps, err
}

// Join asks the node to join the gossip addresses; it returns how many
// were reached.
func (c *Client) Join(ctx context.Context, addrs []string) (int, error) {
	var resp JoinResponse
	err := c.doJSON(ctx, http.MethodPost, "/v1/join", JoinRequest{Addresses: addrs}, &resp)
	return resp.Joined, err
}

// Leave makes the node leave the cluster gracefully.
func (c *Client) Leave(ctx context.Context) error {
	return c.doJSON(ctx, http.MethodPost, "/v1/leave", struct{}{}, nil)
}

// TransferLeader hands leadership to the voter named to ("" = any).
func (c *Client) TransferLeader(ctx context.Context, to string) error {
	return c.doJSON(ctx, http.MethodPost, "/v1/raft/transfer-leader", TransferLeaderRequest{To: to}, nil)
}

// RemovePeer removes a server from the Raft configuration.
func (c *Client) RemovePeer(ctx context.Context, id string) error {
	return c.doJSON(ctx, http.MethodPost, "/v1/raft/remove-peer", RemovePeerRequest{ID: id}, nil)
}

// ApplyService creates or updates a service from its JSON spec.
func (c *Client) ApplyService(ctx context.Context, spec []byte) (fsm.Result, error) {
	var res fsm.Result
	err := c.doRaw(ctx, http.MethodPost, "/v1/services", bytes.NewReader(spec), "application/json", &res)
	return res, err
}

// Services lists all services (the node's local, possibly stale view).
func (c *Client) Services(ctx context.Context) ([]fsm.Service, error) {
	var list []fsm.Service
	err := c.doJSON(ctx, http.MethodGet, "/v1/services", nil, &list)
	return list, err
}

// Service returns one service; a missing one is an error matching
// fsm.ErrUnknownService (and ErrNotFound).
func (c *Client) Service(ctx context.Context, name string) (fsm.Service, error) {
	var svc fsm.Service
	err := c.doJSON(ctx, http.MethodGet, "/v1/services/"+url.PathEscape(name), nil, &svc)
	return svc, err
}

// PostAlert submits a detector alert (POST /v1/alerts; operator or
// detector token) and returns once the leader committed it. A retry of an
// alert that was already committed (same ID) succeeds with Duplicate set,
// so a caller may retry until it gets an answer. Errors keep their identity:
// errors.Is(err, fsm.ErrUnknownService), ErrNoLeader, ErrNotLeader, …
func (c *Client) PostAlert(ctx context.Context, req AlertRequest) (AlertResponse, error) {
	var resp AlertResponse
	err := c.doJSON(ctx, http.MethodPost, "/v1/alerts", req, &resp)
	return resp, err
}

// Alerts lists the node's alert ledger, newest first: at most limit
// records (0 = the server's default, DefaultAlertListLimit) of service
// ("" = every service).
func (c *Client) Alerts(ctx context.Context, service string, limit int) ([]fsm.AlertRecord, error) {
	q := url.Values{}
	if service != "" {
		q.Set("service", service)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/v1/alerts"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var list []fsm.AlertRecord
	err := c.doJSON(ctx, http.MethodGet, path, nil, &list)
	return list, err
}

// InternalApply submits an encoded fsm command to the leader (node
// certificate required; used by followers to forward Apply).
func (c *Client) InternalApply(ctx context.Context, cmd []byte) (fsm.Result, error) {
	var res fsm.Result
	err := c.doRaw(ctx, http.MethodPost, "/v1/internal/apply", bytes.NewReader(cmd), "application/octet-stream", &res)
	return res, err
}

// SnapshotSave streams a snapshot of the replicated state into w and
// verifies it against the digest the server sends as a trailer.
func (c *Client) SnapshotSave(ctx context.Context, w io.Writer) error {
	const path = "/v1/snapshot"
	req, err := c.newRequest(ctx, http.MethodGet, path, nil, "")
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/octet-stream")
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(markWriter{w}, h), resp.Body); err != nil {
		var we *writeError
		if errors.As(err, &we) {
			return fmt.Errorf("client: writing snapshot: %w", we.err)
		}
		return &NetworkError{Op: "GET " + path, Addr: c.Addr(), Err: fmt.Errorf("snapshot transfer broken: %w", err)}
	}
	if want := resp.Trailer.Get(SnapshotDigestTrailer); want != "" {
		if got := hex.EncodeToString(h.Sum(nil)); got != want {
			return fmt.Errorf("client: snapshot digest mismatch (got %s, server sent %s): transfer corrupted", got, want)
		}
	}
	return nil
}

// writeError marks errors from the caller's writer (as opposed to the
// network) in SnapshotSave.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }

type markWriter struct{ w io.Writer }

func (m markWriter) Write(p []byte) (int, error) {
	n, err := m.w.Write(p)
	if err != nil {
		err = &writeError{err}
	}
	return n, err
}

// SnapshotRestore streams a snapshot from r to the leader, which replaces
// the replicated state with it. r is not closed.
func (c *Client) SnapshotRestore(ctx context.Context, r io.Reader) error {
	return c.doRaw(ctx, http.MethodPost, "/v1/snapshot", io.NopCloser(r), "application/octet-stream", nil)
}

// Switch asks the leader for a manual switch of service (POST
// /v1/services/{name}/switch; operator token). to "" lets the leader pick.
// A refusal is an *APIError with code "conflict" (409).
func (c *Client) Switch(ctx context.Context, service string, req SwitchRequest) (SwitchResponse, error) {
	var resp SwitchResponse
	err := c.doJSON(ctx, http.MethodPost, "/v1/services/"+url.PathEscape(service)+"/switch", req, &resp)
	return resp, err
}

// ReplicaAction applies action (one of ReplicaActions) to a replica (POST
// /v1/services/{name}/replicas/{replica}/{action}; operator token).
func (c *Client) ReplicaAction(ctx context.Context, service, replica, action, reason string) (ReplicaActionResponse, error) {
	var resp ReplicaActionResponse
	path := "/v1/services/" + url.PathEscape(service) + "/replicas/" + url.PathEscape(replica) + "/" + url.PathEscape(action)
	err := c.doJSON(ctx, http.MethodPost, path, ReplicaActionRequest{Reason: reason}, &resp)
	return resp, err
}

// History returns the switch history of service ("" = every service) and
// its per-(reason, platform pair) aggregates (GET /v1/history).
func (c *Client) History(ctx context.Context, service string) (HistoryResponse, error) {
	path := "/v1/history"
	if service != "" {
		path += "?" + url.Values{"service": {service}}.Encode()
	}
	var resp HistoryResponse
	err := c.doJSON(ctx, http.MethodGet, path, nil, &resp)
	return resp, err
}
