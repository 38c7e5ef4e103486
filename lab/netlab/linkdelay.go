package netlab

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
)

// Delayed links. This kernel has neither the netem qdisc nor nftables'
// queue expression, but it has the iptables NFQUEUE target. A link fault
// with a delay puts two rules in the node's own namespace (its filter
// table, replaced whole by iptables-restore; nothing else of the lab uses
// it): frames it receives (INPUT) and sends (OUTPUT), loopback excepted,
// go to netfilter queue delayQueue of that namespace, and a delayer in
// this process gives each frame its verdict, accept, once its delay has
// passed: the fault's delay plus a uniform jitter of up to ± its jitter.
// Frames are let go in the order of their release times, so a jitter
// reorders them as netem's does. `--queue-bypass` lets frames through
// undelayed if no delayer listens (this process gone); the loss of a
// fault that has both stays in the hub's bridge rules.

// MaxLinkDelay bounds a link fault's delay.
const MaxLinkDelay = time.Second

// delayQueue is the netfilter queue number of a node's delayer (queues
// are per namespace; each node has its own).
const delayQueue = 100

// delayQueueLen is how many frames a delayer holds at most; the kernel
// drops what comes beyond (a lab node sends far fewer than this in a
// second).
const delayQueueLen = 8192

// delayRules is the iptables-restore input that sends f's directions to
// the delay queue (none: the empty filter table).
func delayRules(f LinkFault) string {
	var b strings.Builder
	b.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	q := " -j NFQUEUE --queue-num " + strconv.Itoa(delayQueue) + " --queue-bypass\n"
	if f.DelayMS > 0 && f.Loss < 100 {
		if f.ToNode {
			b.WriteString("-A INPUT ! -i lo" + q)
		}
		if f.FromNode {
			b.WriteString("-A OUTPUT ! -o lo" + q)
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// iptablesRestore loads rules into the node's namespace.
func (l *Lab) iptablesRestore(node, rules string) error {
	ctx, cancel := context.WithTimeout(context.Background(), nftTimeout)
	defer cancel()
	ns := l.NodeNamespace(node)
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "iptables-restore", "-w", "5")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("netlab: iptables-restore in %s: %w: %s", ns, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// startDelay starts the i-th node's delayer, then its rules.
func (l *Lab) startDelay(node string, i int, f LinkFault) error {
	d, err := l.startDelayer(l.NodeNamespace(node), time.Duration(f.DelayMS)*time.Millisecond, time.Duration(f.JitterMS)*time.Millisecond)
	if err != nil {
		return err
	}
	l.mu.Lock()
	if l.delayers == nil {
		l.delayers = map[int]*delayer{}
	}
	l.delayers[i] = d
	l.mu.Unlock()
	if err := l.iptablesRestore(node, delayRules(f)); err != nil {
		_ = l.clearDelay(node, i)
		return err
	}
	return nil
}

// clearDelay ends the i-th node's delay, if it has one: the rules first,
// then the delayer, which lets every frame it holds go.
func (l *Lab) clearDelay(node string, i int) error {
	l.mu.Lock()
	d := l.delayers[i]
	delete(l.delayers, i)
	l.mu.Unlock()
	if d == nil {
		return nil
	}
	err := l.iptablesRestore(node, delayRules(LinkFault{}))
	d.stop()
	return err
}

// DelayedFrames is how many frames the node's current delay fault has
// held so far (0 without one).
func (l *Lab) DelayedFrames(node string) int64 {
	i := slices.Index(l.t.Nodes, node)
	l.mu.Lock()
	defer l.mu.Unlock()
	if d := l.delayers[i]; d != nil {
		return d.held.Load()
	}
	return 0
}

// delayer holds one node's frames for their delay.
type delayer struct {
	nf            *nfqueue.Nfqueue
	delay, jitter time.Duration
	unhook        context.CancelFunc // ends the library's reading (and unbinds the queue)
	cancel        context.CancelFunc // ends run, which first lets every held frame go
	done          chan struct{}

	mu      sync.Mutex
	pending releases
	rng     *rand.Rand
	wake    chan struct{}
	held    atomic.Int64 // frames delayed so far
}

type release struct {
	at time.Time
	id uint32
}

// releases is a min-heap by release time.
type releases []release

func (r releases) Len() int           { return len(r) }
func (r releases) Less(i, j int) bool { return r[i].at.Before(r[j].at) }
func (r releases) Swap(i, j int)      { r[i], r[j] = r[j], r[i] }
func (r *releases) Push(x any)        { *r = append(*r, x.(release)) }
func (r *releases) Pop() any {
	old := *r
	x := old[len(old)-1]
	*r = old[:len(old)-1]
	return x
}

// startDelayer opens the delay queue in namespace ns and starts delaying
// what reaches it.
func (l *Lab) startDelayer(ns string, delay, jitter time.Duration) (*delayer, error) {
	d := &delayer{delay: delay, jitter: jitter, done: make(chan struct{}), wake: make(chan struct{}, 1),
		rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x64656c6179))} // "delay"
	err := inNetns(filepath.Join(netnsDir, ns), func() error {
		var err error
		d.nf, err = nfqueue.Open(&nfqueue.Config{
			NfQueue:      delayQueue,
			MaxPacketLen: 0, // the verdict needs the id only
			MaxQueueLen:  delayQueueLen,
			Copymode:     nfqueue.NfQnlCopyMeta,
			WriteTimeout: time.Second,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlab: netfilter queue in %s: %w", ns, err)
	}
	hookCtx, unhook := context.WithCancel(context.Background())
	d.unhook = unhook
	err = d.nf.RegisterWithErrorFunc(hookCtx, d.arrived, func(e error) int {
		if errors.Is(hookCtx.Err(), context.Canceled) {
			return 1 // stop reading
		}
		return 0 // go on (a receive buffer overrun is not fatal)
	})
	if err != nil {
		unhook()
		d.nf.Close()
		return nil, fmt.Errorf("netlab: netfilter queue in %s: %w", ns, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go d.run(ctx)
	return d, nil
}

// arrived takes a frame from the kernel and schedules its release.
func (d *delayer) arrived(a nfqueue.Attribute) int {
	if a.PacketID == nil {
		return 0
	}
	d.mu.Lock()
	hold := d.delay
	if d.jitter > 0 {
		hold += time.Duration(d.rng.Int64N(int64(2*d.jitter)+1)) - d.jitter
	}
	heap.Push(&d.pending, release{at: time.Now().Add(max(hold, 0)), id: *a.PacketID})
	d.mu.Unlock()
	d.held.Add(1)
	select {
	case d.wake <- struct{}{}:
	default:
	}
	return 0
}

// run releases each frame when its time comes; when ctx ends it releases
// every frame still held at once.
func (d *delayer) run(ctx context.Context) {
	defer close(d.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		next := time.Duration(-1)
		for {
			d.mu.Lock()
			if d.pending.Len() == 0 {
				d.mu.Unlock()
				break
			}
			r := d.pending[0]
			if r.at.After(now) && ctx.Err() == nil {
				next = r.at.Sub(now)
				d.mu.Unlock()
				break
			}
			heap.Pop(&d.pending)
			d.mu.Unlock()
			// A verdict the kernel refuses is for a frame it no longer
			// holds (the queue was flushed): nothing is left to let go.
			_ = d.nf.SetVerdict(r.id, nfqueue.NfAccept)
		}
		if ctx.Err() != nil {
			return
		}
		if next < 0 {
			next = time.Hour
		}
		timer.Reset(next)
		select {
		case <-ctx.Done():
		case <-d.wake:
		case <-timer.C:
		}
	}
}

// stop lets every frame still held go, then unbinds and closes the
// queue. Callers remove the rules that feed the queue first; a frame
// already on its way to it when the queue is unbound is dropped.
func (d *delayer) stop() {
	d.cancel()
	<-d.done
	d.unhook()
	d.nf.Close()
}
