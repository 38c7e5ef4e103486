package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ars-project/ars/cluster"
)

// Webhook request headers.
const (
	// HeaderEventID is the event's Raft index: the same event always has
	// the same id, so a receiver deduplicates on it.
	HeaderEventID = "X-Ars-Event-Id"
	// HeaderEventType is the event's type (a command type such as "switch").
	HeaderEventType = "X-Ars-Event-Type"
	// HeaderSignature is "sha256=" and the hex HMAC-SHA256 of the body,
	// keyed with the sink's secret.
	HeaderSignature = "X-Ars-Signature"
)

// WebhookConfig POSTs each event's JSON to URL, signed with the secret in
// SecretFile (trailing newline ignored; never logged). A failed attempt (no
// answer within Timeout, or an answer other than 2xx) is retried after
// Backoff, doubling up to MaxBackoff, for MaxAttempts attempts in all.
// Events wait in a queue of Queue; when it is full, new events are dropped
// and counted. Zero values take the defaults.
type WebhookConfig struct {
	URL         string
	SecretFile  string
	Timeout     time.Duration
	MaxAttempts int
	Queue       int
	Backoff     time.Duration
	MaxBackoff  time.Duration
	// Client is the HTTP client (default: one that follows no redirect).
	Client *http.Client
}

type webhookSink struct {
	url     string
	secret  []byte
	timeout time.Duration
	client  *http.Client
}

// ReadSecret reads a webhook secret file: its content without the trailing
// newline, which must not be empty. Errors never hold the content.
func ReadSecret(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("webhook secret: %w", err)
	}
	s := bytes.TrimRight(data, "\r\n")
	if len(s) == 0 {
		return nil, fmt.Errorf("webhook secret file %s is empty", path)
	}
	return s, nil
}

func newWebhookSink(c WebhookConfig) (*sink, error) {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("webhook: url must be http(s)://HOST/PATH")
	}
	if c.SecretFile == "" {
		return nil, errors.New("webhook: secret_file required")
	}
	secret, err := ReadSecret(c.SecretFile)
	if err != nil {
		return nil, err
	}
	if c.Timeout < 0 || c.MaxAttempts < 0 || c.Queue < 0 || c.Backoff < 0 || c.MaxBackoff < 0 {
		return nil, errors.New("webhook: timeout, max_attempts, queue and backoffs must not be negative")
	}
	d := &webhookSink{url: c.URL, secret: secret, timeout: c.Timeout, client: c.Client}
	if d.timeout == 0 {
		d.timeout = DefaultWebhookTimeout
	}
	if d.client == nil {
		d.client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	s := &sink{kind: "webhook", d: d, queue: c.Queue, maxAttempts: c.MaxAttempts, backoff: c.Backoff, maxBackoff: c.MaxBackoff}
	if s.queue == 0 {
		s.queue = DefaultQueue
	}
	if s.maxAttempts == 0 {
		s.maxAttempts = DefaultMaxAttempts
	}
	if s.backoff == 0 {
		s.backoff = DefaultBackoff
	}
	if s.maxBackoff == 0 {
		s.maxBackoff = max(DefaultMaxBackoff, s.backoff)
	}
	return s, nil
}

// Sign is the HeaderSignature value of body under secret.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// deliver POSTs one event. Its errors name neither the URL (it may carry
// a token) nor the secret.
func (w *webhookSink) deliver(ctx context.Context, e cluster.Event, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return errors.New("building the request failed")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderEventID, strconv.FormatUint(e.Index, 10))
	req.Header.Set(HeaderEventType, string(e.Type))
	req.Header.Set(HeaderSignature, Sign(w.secret, body))
	resp, err := w.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if ctx.Err() == context.DeadlineExceeded {
			return fmt.Errorf("no answer within %s", w.timeout)
		}
		return fmt.Errorf("POST failed: %s", strings.ReplaceAll(err.Error(), w.url, "URL"))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("answered %s", resp.Status)
	}
	return nil
}
