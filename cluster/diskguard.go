package cluster

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// rpcGate stands between the Raft transport and Raft. While closed it
// answers every incoming RPC (heartbeats included) with an error, as a
// node that cannot be reached would: a node whose disk cannot take a
// write then never learns a newer term, which raft would have to persist
// and — when it cannot — panics over. It also refuses to send
// AppendEntries (heartbeats included): a leader whose loop hangs on a
// stalled log write keeps its replication routines running, and their
// AppendEntries would hold the followers from electing another leader for
// as long as the disk stalls.
type rpcGate struct {
	*raft.NetworkTransport
	closed atomic.Bool
	out    chan raft.RPC
}

func newRPCGate(ctx context.Context, nt *raft.NetworkTransport) *rpcGate {
	g := &rpcGate{NetworkTransport: nt, out: make(chan raft.RPC)}
	go g.run(ctx)
	return g
}

func (g *rpcGate) close() { g.closed.Store(true) }
func (g *rpcGate) open()  { g.closed.Store(false) }

// refuse answers rpc with the gate's error; it reports whether it did.
func (g *rpcGate) refuse(rpc raft.RPC) bool {
	if !g.closed.Load() {
		return false
	}
	if rpc.Reader != nil {
		// An InstallSnapshot's data follows its request on the
		// connection: read it, or the transport takes it for the next
		// request and drops the connection.
		_, _ = io.Copy(io.Discard, rpc.Reader)
	}
	rpc.Respond(nil, fmt.Errorf("%w: this node takes no part in raft until its disk recovers", ErrDiskUnhealthy))
	return true
}

func (g *rpcGate) run(ctx context.Context) {
	in := g.NetworkTransport.Consumer()
	for {
		select {
		case <-ctx.Done():
			return
		case rpc := <-in:
			if g.refuse(rpc) {
				continue
			}
			select {
			case g.out <- rpc:
			case <-ctx.Done():
				rpc.Respond(nil, raft.ErrRaftShutdown)
				return
			}
		}
	}
}

// errGateClosed is what an AppendEntries sent through a closed gate fails
// with.
var errGateClosed = fmt.Errorf("%w: this node sends no AppendEntries until its disk recovers", ErrDiskUnhealthy)

// AppendEntries sends an AppendEntries RPC unless the gate is closed.
func (g *rpcGate) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if g.closed.Load() {
		return errGateClosed
	}
	return g.NetworkTransport.AppendEntries(id, target, args, resp)
}

// AppendEntriesPipeline opens a pipeline whose sends the gate can refuse.
func (g *rpcGate) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	if g.closed.Load() {
		return nil, errGateClosed
	}
	p, err := g.NetworkTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	return gatedPipeline{AppendPipeline: p, g: g}, nil
}

// gatedPipeline is a pipeline the gate can refuse sends on.
type gatedPipeline struct {
	raft.AppendPipeline
	g *rpcGate
}

func (p gatedPipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	if p.g.closed.Load() {
		return nil, errGateClosed
	}
	return p.AppendPipeline.AppendEntries(args, resp)
}

// Consumer is where Raft reads the RPCs the gate lets through.
func (g *rpcGate) Consumer() <-chan raft.RPC { return g.out }

// SetHeartbeatHandler puts the gate in front of the transport's fast path
// for heartbeats, which bypasses Consumer.
func (g *rpcGate) SetHeartbeatHandler(cb func(raft.RPC)) {
	if cb == nil {
		g.NetworkTransport.SetHeartbeatHandler(nil)
		return
	}
	g.NetworkTransport.SetHeartbeatHandler(func(rpc raft.RPC) {
		if !g.refuse(rpc) {
			cb(rpc)
		}
	})
}

// guardedStore is the bolt log and stable store with its write errors
// reported to the disk monitor, and with the one write raft cannot survive
// failing made to wait: raft panics when it cannot persist a new current
// term, so that write is retried until it succeeds (the disk recovered) or
// the node shuts down. The gate keeps new terms away from a node whose
// disk is known to be unhealthy; this covers the moments before it knows.
type guardedStore struct {
	*raftboltdb.BoltStore
	ctx     context.Context
	started func() (done func()) // a write begins; done when it returns
	failed  func(error)
	retry   time.Duration
	onRetry func(error) // logs, once per blocked write
}

// keyCurrentTerm is the stable-store key raft keeps its current term under.
const keyCurrentTerm = "CurrentTerm"

func (g *guardedStore) StoreLog(l *raft.Log) error {
	return g.write(func() error { return g.BoltStore.StoreLog(l) })
}

func (g *guardedStore) StoreLogs(ls []*raft.Log) error {
	return g.write(func() error { return g.BoltStore.StoreLogs(ls) })
}

func (g *guardedStore) DeleteRange(min, max uint64) error {
	return g.write(func() error { return g.BoltStore.DeleteRange(min, max) })
}

func (g *guardedStore) Set(k, v []byte) error {
	return g.write(func() error { return g.BoltStore.Set(k, v) })
}

func (g *guardedStore) SetUint64(k []byte, v uint64) error {
	set := func() error { return g.BoltStore.SetUint64(k, v) }
	err := g.write(set)
	if err == nil || string(k) != keyCurrentTerm {
		return err
	}
	g.onRetry(err)
	for {
		select {
		case <-g.ctx.Done():
			// Shutting down: raft would panic on the error. Nothing was
			// written, so the node restarts with the term it had, as if
			// it had stopped just before this write.
			return nil
		case <-time.After(g.retry):
		}
		if err = g.write(set); err == nil {
			return nil
		}
	}
}

// write runs one write, timed for the disk monitor, and reports its
// error.
func (g *guardedStore) write(f func() error) error {
	if g.started != nil {
		defer g.started()()
	}
	return g.report(f())
}

func (g *guardedStore) report(err error) error {
	if err != nil {
		g.failed(err)
	}
	return err
}
