package fabric

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Client queries the service address at a fixed interval and records every
// result, so a test can measure an outage the way a user of the service
// sees it. It runs until its context ends or MaxQueries were sent.
type Client struct {
	addr     string
	interval time.Duration
	timeout  time.Duration

	mu      sync.Mutex
	results []Result
}

// Result is one query: when it was sent and whether a valid answer came
// back within the timeout.
type Result struct {
	Sent time.Time
	OK   bool
}

// MaxQueries bounds a Client's run.
const MaxQueries = 200_000

// NewClient returns a client for addr; interval is the send interval (every
// query has its own socket and waits at most timeout).
func NewClient(addr string, interval, timeout time.Duration) *Client {
	return &Client{addr: addr, interval: interval, timeout: timeout}
}

// Run sends queries until ctx ends.
func (c *Client) Run(ctx context.Context) {
	t := time.NewTicker(c.interval)
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := 0; i < MaxQueries; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sent := time.Now()
			ok := c.query()
			c.mu.Lock()
			c.results = append(c.results, Result{Sent: sent, OK: ok})
			c.mu.Unlock()
		}()
	}
}

func (c *Client) query() bool {
	m := new(dns.Msg)
	m.SetQuestion(QName, dns.TypeA)
	cl := &dns.Client{Net: "udp", Timeout: c.timeout}
	r, _, err := cl.Exchange(m, c.addr)
	if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		return false
	}
	a, ok := r.Answer[0].(*dns.A)
	return ok && a.A.String() == Answer
}

// Outage summarises the results sent in [from, to).
type Outage struct {
	Sent, Lost int
	// Gaps is the number of runs of lost queries.
	Gaps int
	// Longest is the longest run of lost queries, from the first lost
	// query's send time to the next answered query's send time (or to the
	// last lost one's, if none answered after it).
	Longest time.Duration
}

// Outage returns what the client saw between from and to.
func (c *Client) Outage(from, to time.Time) Outage {
	c.mu.Lock()
	rs := make([]Result, 0, len(c.results))
	for _, r := range c.results {
		if !r.Sent.Before(from) && r.Sent.Before(to) {
			rs = append(rs, r)
		}
	}
	c.mu.Unlock()
	// Results are appended in completion order; sort by send time.
	sortResults(rs)
	var o Outage
	var start time.Time
	inGap := false
	for _, r := range rs {
		o.Sent++
		if !r.OK {
			o.Lost++
			if !inGap {
				start, inGap = r.Sent, true
				o.Gaps++
			}
			if d := r.Sent.Sub(start); d > o.Longest {
				o.Longest = d
			}
			continue
		}
		if inGap {
			if d := r.Sent.Sub(start); d > o.Longest {
				o.Longest = d
			}
			inGap = false
		}
	}
	return o
}

// Answered reports whether a query sent at or after t has been answered.
func (c *Client) Answered(t time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.results {
		if r.OK && !r.Sent.Before(t) {
			return true
		}
	}
	return false
}

func sortResults(rs []Result) {
	slices.SortFunc(rs, func(a, b Result) int { return a.Sent.Compare(b.Sent) })
}
