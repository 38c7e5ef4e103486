package replicaagent

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// Client timeouts. A call's own bound comes from its context (the leader
// gives a claim a few hundred milliseconds); these bound what no context
// covers and keep a warm connection ready for the next switch.
const (
	clientDialTimeout      = 2 * time.Second
	clientHandshakeTimeout = 2 * time.Second
	clientIdleTimeout      = 5 * time.Minute
	maxAnswerBytes         = 64 << 10
)

// Client calls one replica agent. It keeps its connection open between
// calls (a claim on the critical path of a switch then costs one round
// trip, not a TCP and TLS handshake); call State now and then to keep it
// warm.
type Client struct {
	replica string
	base    string
	hc      *http.Client
}

// NewClient is a client for the agent of replica at addr (host:port),
// over tlsCfg (transport.AgentClientTLS, which checks that the agent's
// certificate names replica).
func NewClient(replica, addr string, tlsCfg *tls.Config) (*Client, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" {
		return nil, fmt.Errorf("replica agent address %q: want HOST:PORT", addr)
	}
	if tlsCfg == nil {
		return nil, fmt.Errorf("replica agent %s: a TLS configuration is required", replica)
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: clientDialTimeout, KeepAlive: 15 * time.Second}).DialContext,
		TLSClientConfig:     tlsCfg,
		TLSHandshakeTimeout: clientHandshakeTimeout,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     clientIdleTimeout,
		DisableCompression:  true,
	}
	return &Client{replica: replica, base: "https://" + addr, hc: &http.Client{Transport: tr}}, nil
}

// Replica is the replica whose agent the client calls.
func (c *Client) Replica() string { return c.replica }

// Claim asks the agent to put address on its service link and announce it.
func (c *Client) Claim(ctx context.Context, f Fence, address netip.Addr) (Result, error) {
	return c.command(ctx, PathClaim, f, address)
}

// Release asks the agent to take address off its service link.
func (c *Client) Release(ctx context.Context, f Fence, address netip.Addr) (Result, error) {
	return c.command(ctx, PathRelease, f, address)
}

func (c *Client) command(ctx context.Context, path string, f Fence, address netip.Addr) (Result, error) {
	body, err := json.Marshal(Command{Replica: c.replica, Address: address.String(), Fence: f})
	if err != nil {
		return Result{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return Result{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	var res Result
	return res, c.do(req, &res)
}

// State asks what the agent holds.
func (c *Client) State(ctx context.Context) (State, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+PathState, nil)
	if err != nil {
		return State{}, err
	}
	var st State
	return st, c.do(req, &st)
}

func (c *Client) do(req *http.Request, out any) error {
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("replica agent of %s: %w", c.replica, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return fmt.Errorf("replica agent of %s: reading the answer: %w", c.replica, err)
	}
	if resp.StatusCode != http.StatusOK {
		var eb errorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error != nil && eb.Error.Code != "" {
			eb.Error.Status = resp.StatusCode
			return fmt.Errorf("replica agent of %s: %w", c.replica, eb.Error)
		}
		return fmt.Errorf("replica agent of %s: %w", c.replica, &Error{Status: resp.StatusCode, Code: CodeFailed,
			Message: fmt.Sprintf("unexpected answer %q", bytes.TrimSpace(data[:min(len(data), 200)]))})
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("replica agent of %s: the answer is not valid: %w", c.replica, err)
	}
	return nil
}

// Close drops the kept connection.
func (c *Client) Close() { c.hc.CloseIdleConnections() }
