package netlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// QName is the name the client asks for (type A).
const QName = "www.lab.internal."

// MaxQueries bounds one Client's run.
const MaxQueries = 200_000

// Client queries the service address from inside the client namespace at a
// fixed interval and records every result, so a test or the benchmark
// measures an outage the way a user of the service sees it.
//
// It uses one UDP socket, created in the client namespace (a locked OS
// thread joins the namespace just for socket(2)); queries are told apart
// by their DNS ID. A query counts as answered if a NOERROR reply with an A
// record arrives within the timeout.
type Client struct {
	conn     *net.UDPConn
	server   *net.UDPAddr
	interval time.Duration
	timeout  time.Duration
	qname    string

	mu      sync.Mutex
	results []Result
	byID    map[uint16]int // pending query ID -> index in results
	closed  chan struct{}
	readErr error
	wg      sync.WaitGroup
}

// Result is one query.
type Result struct {
	Sent time.Time
	// RTT is the time to the answer (0 if none came).
	RTT time.Duration
	// Answer is the A record of the reply (invalid if none came).
	Answer netip.Addr
	// Err says why no answer was recorded, if sending failed.
	Err error
}

// OK reports whether a valid answer came within the timeout.
func (r Result) OK() bool { return r.Answer.IsValid() }

// NewClient opens the client's socket in the client namespace. interval is
// the send interval, timeout how long a query may take to count as
// answered.
func (l *Lab) NewClient(interval, timeout time.Duration) (*Client, error) {
	if interval <= 0 || timeout <= 0 {
		return nil, errors.New("netlab: client interval and timeout must be positive")
	}
	c := &Client{
		server:   net.UDPAddrFromAddrPort(netip.AddrPortFrom(l.t.Service, 53)),
		interval: interval, timeout: timeout, qname: QName,
		byID: map[uint16]int{}, closed: make(chan struct{}),
	}
	err := inNetns(filepath.Join(netnsDir, l.clientNS()), func() error {
		conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(l.t.Client, 0)))
		if err != nil {
			return fmt.Errorf("netlab: client socket: %w", err)
		}
		c.conn = conn
		return nil
	})
	if err != nil {
		return nil, err
	}
	c.wg.Add(1)
	go func() { defer c.wg.Done(); c.read() }()
	return c, nil
}

// Close closes the socket; results stay readable.
func (c *Client) Close() {
	select {
	case <-c.closed:
	default:
		close(c.closed)
	}
	c.conn.Close()
	c.wg.Wait()
}

// Run sends a query every interval until ctx ends, MaxQueries were sent or
// the client is closed.
func (c *Client) Run(ctx context.Context) {
	t := time.NewTicker(c.interval)
	defer t.Stop()
	id := uint16(0)
	for range MaxQueries {
		select {
		case <-ctx.Done():
			return
		case <-c.closed:
			return
		case <-t.C:
		}
		id++
		m := new(dns.Msg)
		m.SetQuestion(c.qname, dns.TypeA)
		m.Id = id
		b, err := m.Pack()
		if err != nil {
			return
		}
		c.mu.Lock()
		c.byID[id] = len(c.results)
		c.results = append(c.results, Result{Sent: time.Now()})
		i := len(c.results) - 1
		c.mu.Unlock()
		if _, err := c.conn.WriteToUDP(b, c.server); err != nil {
			c.mu.Lock()
			c.results[i].Err = err
			delete(c.byID, id)
			c.mu.Unlock()
		}
	}
}

// read matches replies to queries.
func (c *Client) read() {
	buf := make([]byte, 4096)
	for {
		n, _, err := c.conn.ReadFromUDP(buf)
		now := time.Now()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				c.mu.Lock()
				c.readErr = err
				c.mu.Unlock()
			}
			return
		}
		m := new(dns.Msg)
		if m.Unpack(buf[:n]) != nil || !m.Response || m.Rcode != dns.RcodeSuccess ||
			len(m.Question) != 1 || !strings.EqualFold(m.Question[0].Name, c.qname) || len(m.Answer) != 1 {
			continue
		}
		a, ok := m.Answer[0].(*dns.A)
		if !ok {
			continue
		}
		addr, ok := netip.AddrFromSlice(a.A.To4())
		if !ok {
			continue
		}
		c.mu.Lock()
		if i, ok := c.byID[m.Id]; ok {
			delete(c.byID, m.Id)
			if rtt := now.Sub(c.results[i].Sent); rtt <= c.timeout {
				c.results[i].RTT, c.results[i].Answer = rtt, addr
			}
		}
		c.mu.Unlock()
	}
}

// Results returns a copy of the results so far, in send order.
func (c *Client) Results() []Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.results)
}

// Outage summarises the queries sent in [from, to) whose fate is known:
// answered, or unanswered for longer than the timeout.
type Outage struct {
	Sent, Lost int
	// Gaps is the number of runs of lost queries.
	Gaps int
	// Longest is the longest run of lost queries, from the first lost
	// query's send time to the send time of the next answered one (or of
	// the last lost one, if none was answered after it).
	Longest time.Duration
	// Answers counts answered queries by the address they returned.
	Answers map[netip.Addr]int
	// Spans lists the gaps, oldest first.
	Spans []Gap
}

// Gap is one run of lost queries: from the first lost query's send time to
// the send time of the next answered one (End), or of the last lost one
// with Open set if none was answered after it (within the window asked
// for).
type Gap struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	Lost  int       `json:"lost"`
	Open  bool      `json:"open,omitempty"`
}

func (o Outage) String() string {
	return fmt.Sprintf("sent %d, lost %d in %d gap(s), longest gap %s, answers %v", o.Sent, o.Lost, o.Gaps, o.Longest, o.Answers)
}

// Outage returns what the client saw between from and to.
func (c *Client) Outage(from, to time.Time) Outage { return Outages(from, to, c) }

// Outages is Outage over clients that ran one after another (a client and
// the one that replaced it, in that order; nil ones are skipped): their
// results form one sequence, so a gap that runs across the change is one
// gap, closed by the first answer of the later client.
func Outages(from, to time.Time, clients ...*Client) Outage {
	var rs []Result
	for _, c := range clients {
		if c != nil {
			rs = append(rs, c.settled(from, to)...)
		}
	}
	return summarize(rs)
}

// settled returns the results sent in [from, to) whose fate is known:
// answered, failed to send, or unanswered for longer than the timeout.
func (c *Client) settled(from, to time.Time) []Result {
	pending := time.Now().Add(-c.timeout)
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Result
	for _, r := range c.results[c.firstAfter(from):c.firstAfter(to)] {
		if !r.OK() && r.Err == nil && r.Sent.After(pending) {
			continue // may still be answered
		}
		out = append(out, r)
	}
	return out
}

// summarize counts settled results in send order.
func summarize(rs []Result) Outage {
	o := Outage{Answers: map[netip.Addr]int{}}
	var start time.Time
	inGap := false
	for _, r := range rs {
		o.Sent++
		if !r.OK() {
			o.Lost++
			if !inGap {
				start, inGap = r.Sent, true
				o.Gaps++
				o.Spans = append(o.Spans, Gap{Start: start, Open: true})
			}
			o.Longest = max(o.Longest, r.Sent.Sub(start))
			g := &o.Spans[len(o.Spans)-1]
			g.End, g.Lost = r.Sent, g.Lost+1
			continue
		}
		o.Answers[r.Answer]++
		if inGap {
			o.Longest = max(o.Longest, r.Sent.Sub(start))
			inGap = false
			g := &o.Spans[len(o.Spans)-1]
			g.End, g.Open = r.Sent, false
		}
	}
	return o
}

// WaitAnswer waits until a query sent at or after since is answered with
// want (any address if want is invalid), polling until ctx ends.
func (c *Client) WaitAnswer(ctx context.Context, since time.Time, want netip.Addr) error {
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		c.mu.Lock()
		for _, r := range c.results[c.firstAfter(since):] {
			if r.OK() && (!want.IsValid() || r.Answer == want) {
				c.mu.Unlock()
				return nil
			}
		}
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return fmt.Errorf("netlab: no answer %v since %s: %w", want, since.Format(time.StampMilli), ctx.Err())
		case <-t.C:
		}
	}
}

// WaitLost waits until n queries in a row sent at or after since are known
// to be lost, polling until ctx ends.
func (c *Client) WaitLost(ctx context.Context, since time.Time, n int) error {
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		settled := time.Now().Add(-c.timeout)
		run := 0
		c.mu.Lock()
		for _, r := range c.results[c.firstAfter(since):] {
			switch {
			case r.OK():
				run = 0
			case r.Err != nil || r.Sent.Before(settled):
				run++
			}
			if run >= n {
				c.mu.Unlock()
				return nil
			}
		}
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return fmt.Errorf("netlab: not %d lost queries in a row since %s: %w", n, since.Format(time.StampMilli), ctx.Err())
		case <-t.C:
		}
	}
}

// firstAfter is the index of the first result sent at or after t; c.mu held.
func (c *Client) firstAfter(t time.Time) int {
	i, _ := slices.BinarySearchFunc(c.results, t, func(r Result, t time.Time) int { return r.Sent.Compare(t) })
	return i
}

// AnswersIn reports whether a DNS server answers QName at addr:53, asked
// from inside the network namespace at nsPath (one query, timeout):
// whether a replica's server is up, whatever its link to the service
// network (a VM's namespace, or a container's /proc/PID/ns/net with
// 127.0.0.1).
func AnswersIn(nsPath string, addr netip.Addr, timeout time.Duration) error {
	var conn *net.UDPConn
	err := inNetns(nsPath, func() error {
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 53)))
		conn = c
		return err
	})
	if err != nil {
		return fmt.Errorf("netlab: %s: %w", nsPath, err)
	}
	defer conn.Close()
	m := new(dns.Msg).SetQuestion(QName, dns.TypeA)
	dc := &dns.Conn{Conn: conn}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if err := dc.WriteMsg(m); err != nil {
		return fmt.Errorf("netlab: query %s in %s: %w", addr, nsPath, err)
	}
	r, err := dc.ReadMsg()
	if err != nil {
		return fmt.Errorf("netlab: query %s in %s: %w", addr, nsPath, err)
	}
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
		return fmt.Errorf("netlab: query %s in %s: %s with %d answers", addr, nsPath, dns.RcodeToString[r.Rcode], len(r.Answer))
	}
	return nil
}
