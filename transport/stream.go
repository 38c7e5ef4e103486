package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Stream layer defaults.
const (
	DefaultHandshakeTimeout     = 10 * time.Second
	DefaultMaxPendingHandshakes = 64
)

// StreamLayer is a raft.StreamLayer over mutual TLS. Both sides must
// present a certificate issued by the cluster CA that carries the node
// marker (see NodeName); anything else fails the handshake.
//
// Handshakes run in their own goroutines with a deadline, off the accept
// path: a peer that connects and stays silent cannot block Accept, and a
// failed handshake is logged and dropped without affecting the listener.
// At most MaxPendingHandshakes run at once; connections beyond that are
// closed immediately.
type StreamLayer struct {
	ln        net.Listener
	advertise net.Addr
	server    *tls.Config
	client    *tls.Config
	hsTimeout time.Duration
	log       *slog.Logger

	conns  chan net.Conn
	sem    chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
	wg     sync.WaitGroup
}

var _ raft.StreamLayer = (*StreamLayer)(nil)

type streamOptions struct {
	log        *slog.Logger
	hsTimeout  time.Duration
	maxPending int
}

// StreamOption adjusts NewStreamLayer.
type StreamOption func(*streamOptions)

// StreamLogger sets the logger for rejected connections (default: discard).
func StreamLogger(l *slog.Logger) StreamOption { return func(o *streamOptions) { o.log = l } }

// StreamHandshakeTimeout bounds each TLS handshake, inbound and outbound
// when Dial is given no timeout (default DefaultHandshakeTimeout).
func StreamHandshakeTimeout(d time.Duration) StreamOption {
	return func(o *streamOptions) { o.hsTimeout = d }
}

// StreamMaxPendingHandshakes bounds concurrent inbound handshakes (default
// DefaultMaxPendingHandshakes).
func StreamMaxPendingHandshakes(n int) StreamOption {
	return func(o *streamOptions) { o.maxPending = n }
}

// NewStreamLayer listens on bind (host:port) and returns a raft stream
// layer. advertise is the address other nodes dial (nil: the listener's
// address, which must then not be unspecified; a port of 0 is replaced by
// the listener's port). server must verify client certificates against the
// CA (ServerTLS); client must carry this node's certificate (ClientTLS with
// an empty server name, so the dialled address is checked against the
// peer's SANs; a fixed ServerName is cleared). Both configurations are
// cloned; the clones additionally require the peer to be a node
// certificate.
func NewStreamLayer(bind string, advertise net.Addr, server, client *tls.Config, opts ...StreamOption) (*StreamLayer, error) {
	o := streamOptions{hsTimeout: DefaultHandshakeTimeout, maxPending: DefaultMaxPendingHandshakes}
	for _, fn := range opts {
		fn(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if o.hsTimeout <= 0 {
		o.hsTimeout = DefaultHandshakeTimeout
	}
	if o.maxPending <= 0 {
		o.maxPending = DefaultMaxPendingHandshakes
	}
	if server == nil || client == nil {
		return nil, errors.New("raft stream: server and client TLS configurations are required")
	}
	if server.ClientCAs == nil {
		return nil, errors.New("raft stream: server TLS configuration has no client CA pool")
	}
	if len(server.Certificates) == 0 && server.GetCertificate == nil {
		return nil, errors.New("raft stream: server TLS configuration has no certificate")
	}
	if len(client.Certificates) == 0 && client.GetClientCertificate == nil {
		return nil, errors.New("raft stream: client TLS configuration has no certificate (peers require a node certificate)")
	}
	srv := server.Clone()
	srv.ClientAuth = tls.RequireAndVerifyClientCert
	srv.NextProtos = nil
	if srv.MinVersion < tls.VersionTLS12 {
		srv.MinVersion = tls.VersionTLS12
	}
	RequireNodePeer(srv, "raft peer (client)")
	cli := client.Clone()
	cli.NextProtos = nil
	cli.ServerName = "" // each dial checks the peer against the dialled address
	if cli.MinVersion < tls.VersionTLS12 {
		cli.MinVersion = tls.VersionTLS12
	}
	RequireNodePeer(cli, "raft peer (server)")

	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("raft stream: listen on %s: %w", bind, err)
	}
	adv, err := advertiseAddr(advertise, ln.Addr())
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &StreamLayer{
		ln: ln, advertise: adv, server: srv, client: cli,
		hsTimeout: o.hsTimeout, log: o.log,
		conns:  make(chan net.Conn),
		sem:    make(chan struct{}, o.maxPending),
		ctx:    ctx,
		cancel: cancel,
	}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

func advertiseAddr(advertise, listen net.Addr) (net.Addr, error) {
	lt, _ := listen.(*net.TCPAddr)
	if advertise == nil {
		if lt == nil || lt.IP == nil || lt.IP.IsUnspecified() {
			return nil, fmt.Errorf("raft stream: listen address %s is not advertisable; give an advertise address", listen)
		}
		return listen, nil
	}
	at, ok := advertise.(*net.TCPAddr)
	if !ok {
		return advertise, nil
	}
	if at.IP == nil || at.IP.IsUnspecified() {
		return nil, fmt.Errorf("raft stream: advertise address %s is not advertisable (unspecified IP)", advertise)
	}
	if at.Port == 0 && lt != nil {
		cp := *at
		cp.Port = lt.Port
		return &cp, nil
	}
	return advertise, nil
}

func (s *StreamLayer) acceptLoop() {
	defer s.wg.Done()
	var delay time.Duration
	for {
		raw, err := s.ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				s.cancel()
				return
			}
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay *= 2; delay > time.Second {
				delay = time.Second
			}
			s.log.Warn("raft stream: accept failed; retrying", "error", err, "delay", delay)
			select {
			case <-time.After(delay):
				continue
			case <-s.ctx.Done():
				return
			}
		}
		delay = 0
		select {
		case s.sem <- struct{}{}:
		default:
			s.log.Warn("raft stream: too many pending TLS handshakes; dropping connection",
				"remote", raw.RemoteAddr().String())
			_ = raw.Close()
			continue
		}
		s.wg.Add(1)
		go s.handshake(raw)
	}
}

func (s *StreamLayer) handshake(raw net.Conn) {
	defer s.wg.Done()
	release := func() { <-s.sem }
	ctx, cancel := context.WithTimeout(s.ctx, s.hsTimeout)
	defer cancel()
	_ = raw.SetDeadline(time.Now().Add(s.hsTimeout))
	tc := tls.Server(raw, s.server)
	if err := tc.HandshakeContext(ctx); err != nil {
		release()
		if s.ctx.Err() == nil {
			s.log.Warn("raft stream: rejected connection", "remote", raw.RemoteAddr().String(), "error", err)
		}
		_ = raw.Close()
		return
	}
	release()
	_ = raw.SetDeadline(time.Time{})
	cs := tc.ConnectionState()
	name, _ := NodeName(&cs)
	s.log.Debug("raft stream: accepted connection", "remote", raw.RemoteAddr().String(), "peer", name)
	select {
	case s.conns <- tc:
	case <-s.ctx.Done():
		_ = tc.Close()
	}
}

// Accept returns the next inbound connection whose TLS handshake succeeded.
// After Close it returns an error wrapping net.ErrClosed.
func (s *StreamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.ctx.Done():
		return nil, fmt.Errorf("raft stream: %w", net.ErrClosed)
	}
}

// Close stops the listener, aborts pending handshakes and waits for them.
func (s *StreamLayer) Close() error {
	var err error
	s.once.Do(func() {
		s.cancel()
		err = s.ln.Close()
		s.wg.Wait()
		if errors.Is(err, net.ErrClosed) {
			err = nil
		}
	})
	return err
}

// Addr is the advertised address.
func (s *StreamLayer) Addr() net.Addr { return s.advertise }

// ListenAddr is the address actually bound (useful with port 0).
func (s *StreamLayer) ListenAddr() net.Addr { return s.ln.Addr() }

// Dial opens a mutual-TLS connection to a peer's stream layer. The timeout
// (DefaultHandshakeTimeout if zero) covers the TCP connect and the TLS
// handshake; the peer must present a node certificate from the CA whose
// SANs match the dialled address.
func (s *StreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if timeout <= 0 {
		timeout = s.hsTimeout
	}
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: s.client}
	c, err := d.DialContext(ctx, "tcp", string(address))
	if err != nil {
		if s.ctx.Err() != nil {
			return nil, fmt.Errorf("raft stream: dial %s: stream layer closed: %w", address, net.ErrClosed)
		}
		return nil, fmt.Errorf("raft stream: dial %s: %w", address, err)
	}
	return c, nil
}
