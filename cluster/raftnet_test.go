package cluster

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// tcpStream is a plain TCP raft.StreamLayer on loopback.
type tcpStream struct{ net.Listener }

func (s tcpStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(addr), timeout)
}

// The Raft transport never pipelines replication: the library's pipeline
// can deadlock after a follower refuses an append, and a node's shutdown
// then never returns (see newRaftTransport).
func TestRaftTransportDoesNotPipeline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nt := newRaftTransport(tcpStream{ln}, hclog.NewNullLogger())
	defer nt.Close()
	p, err := nt.AppendEntriesPipeline("peer", raft.ServerAddress(ln.Addr().String()))
	if !errors.Is(err, raft.ErrPipelineReplicationNotSupported) {
		if p != nil {
			p.Close()
		}
		t.Fatalf("AppendEntriesPipeline: %v; want %v", err, raft.ErrPipelineReplicationNotSupported)
	}
}
