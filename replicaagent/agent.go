package replicaagent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/ars-project/ars/replicaagent/ipaddr"
	"github.com/ars-project/ars/transport"
)

// Defaults of Config.
const (
	DefaultAnnouncements = 3
	DefaultAnnounceGap   = 20 * time.Millisecond
)

// Server timeouts: a command is a few hundred bytes and answered in
// milliseconds, so a slow or silent caller is cut off early and holds
// nothing.
const (
	readHeaderTimeout = 2 * time.Second
	readTimeout       = 5 * time.Second
	writeTimeout      = 5 * time.Second
	idleTimeout       = 2 * time.Minute
)

// Addresser is what the agent does to the replica's network: the service
// address on or off the service link, and announcements of it. The
// agent's own implementation (Link) acts on a Linux link; tests may use
// another.
type Addresser interface {
	Held() (bool, error)
	// Claim puts the address on the link; added says it was not there.
	Claim() (added bool, err error)
	// Announce sends n announcements of the address, gap apart.
	Announce(n int, gap time.Duration) error
	// Release takes the address off; removed says it was there.
	Release() (removed bool, err error)
	// Carrier says whether the service link can carry traffic (its NIC
	// is connected).
	Carrier() (bool, error)
}

// LinkNamer is an Addresser that says which link it acts on, for the
// agent's state and messages when Config.Interface is empty.
type LinkNamer interface{ LinkName() string }

func (a *Agent) linkName() string {
	if a.cfg.Interface != "" {
		return a.cfg.Interface
	}
	if n, ok := a.cfg.Net.(LinkNamer); ok {
		return n.LinkName()
	}
	return ""
}

// Link is the Addresser of a Linux link: Address (with its prefix
// length) on the link called Interface, looked up again on every call so
// that a link made anew is found.
type Link struct {
	Interface string
	Address   netip.Prefix
	// Announcer, if set, sends the announcements through its socket,
	// kept open (closing one costs a claim 8-16 ms); nil opens one per
	// call.
	Announcer *ipaddr.Announcer
}

func (l Link) link() (*ipaddr.Link, error) { return ipaddr.ByName(l.Interface) }

func (l Link) Held() (bool, error) {
	k, err := l.link()
	if err != nil {
		return false, err
	}
	return k.Has(l.Address.Addr())
}

func (l Link) Claim() (bool, error) {
	k, err := l.link()
	if err != nil {
		return false, err
	}
	return k.Put(l.Address)
}

func (l Link) Announce(n int, gap time.Duration) error {
	k, err := l.link()
	if err != nil {
		return err
	}
	if l.Announcer != nil {
		return l.Announcer.Announce(k, l.Address.Addr(), n, gap)
	}
	return k.Announce(l.Address.Addr(), n, gap)
}

func (l Link) Carrier() (bool, error) {
	k, err := l.link()
	if err != nil {
		return false, err
	}
	return k.Carrier(), nil
}

func (l Link) Release() (bool, error) {
	k, err := l.link()
	if err != nil {
		return false, err
	}
	return k.Remove(l.Address.Addr())
}

// Config configures an Agent.
type Config struct {
	// Replica is the replica's name (fsm.ReplicaSpec.Name); commands for
	// another replica are refused.
	Replica string
	// Interface is the service link's name (unless Net says which link it
	// acts on: see LinkNamer); Address the service address with the
	// prefix length it is added with (/32 unless the guest's network
	// needs otherwise). The agent claims no other address.
	Interface string
	Address   netip.Prefix
	// StatePath is the state file (the highest fence seen).
	StatePath string
	// Net acts on the network; nil means Link{Interface, Address}.
	Net Addresser
	// Announcements (default 3) gratuitous ARPs follow a claim, gap
	// AnnounceGap (default 20 ms) apart; the first is sent before the
	// claim is answered, the rest after, unless a newer command comes.
	Announcements int
	AnnounceGap   time.Duration
	Log           *slog.Logger
	// Caller names the controller node that sent r; nil means the node
	// name of r's verified client certificate (transport.NodeName).
	Caller func(r *http.Request) (string, bool)
}

// Agent serves the replica agent's API.
type Agent struct {
	cfg Config
	log *slog.Logger

	mu             sync.Mutex // one command at a time; guards rec and stopAnnouncing
	rec            fenceRecord
	stopAnnouncing context.CancelFunc
	announcing     sync.WaitGroup
	announcer      *ipaddr.Announcer // the Link's, closed when Serve ends
}

// New checks cfg and reads the state file.
func New(cfg Config) (*Agent, error) {
	if !transport.ValidReplicaName(cfg.Replica) {
		return nil, fmt.Errorf("replica agent: replica name %q must match [a-z0-9][a-z0-9._-]{0,62}", cfg.Replica)
	}
	if !cfg.Address.IsValid() {
		return nil, errors.New("replica agent: a service address is required")
	}
	if !cfg.Address.Addr().Is4() {
		return nil, fmt.Errorf("replica agent: service address %s: %w", cfg.Address, ipaddr.ErrIPv6)
	}
	if cfg.Interface == "" && cfg.Net == nil {
		return nil, errors.New("replica agent: the service interface is required")
	}
	if cfg.StatePath == "" {
		return nil, errors.New("replica agent: a state file is required (it keeps the highest fence across restarts)")
	}
	if cfg.Announcements < 0 || cfg.Announcements > 10 {
		return nil, fmt.Errorf("replica agent: %d announcements: must be 0..10", cfg.Announcements)
	}
	if cfg.Announcements == 0 {
		cfg.Announcements = DefaultAnnouncements
	}
	if cfg.AnnounceGap <= 0 {
		cfg.AnnounceGap = DefaultAnnounceGap
	}
	var announcer *ipaddr.Announcer
	if cfg.Net == nil {
		an, err := ipaddr.NewAnnouncer()
		if err != nil {
			return nil, fmt.Errorf("replica agent: %w", err)
		}
		announcer = an
		cfg.Net = Link{Interface: cfg.Interface, Address: cfg.Address, Announcer: an}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Caller == nil {
		cfg.Caller = func(r *http.Request) (string, bool) { return transport.NodeName(r.TLS) }
	}
	rec, err := loadFence(cfg.StatePath, cfg.Replica)
	if err != nil {
		if announcer != nil {
			announcer.Close()
		}
		return nil, fmt.Errorf("replica agent: %w", err)
	}
	return &Agent{cfg: cfg, log: cfg.Log.With("replica", cfg.Replica), rec: rec, announcer: announcer}, nil
}

// Handler is the agent's API.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(PathClaim, func(w http.ResponseWriter, r *http.Request) { a.command(w, r, ActionClaim) })
	mux.HandleFunc(PathRelease, func(w http.ResponseWriter, r *http.Request) { a.command(w, r, ActionRelease) })
	mux.HandleFunc(PathState, a.state)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, CodeNotFound, fmt.Sprintf("no route %s %s", r.Method, r.URL.Path))
	})
	return a.callerOnly(mux)
}

// callerOnly refuses every request that does not come from a controller
// node (the handshake already requires one; this holds if the listener is
// ever configured otherwise).
func (a *Agent) callerOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := a.cfg.Caller(r); !ok {
			a.log.Warn("request refused: caller is not a controller node", "remote", r.RemoteAddr, "path", r.URL.Path)
			writeError(w, http.StatusForbidden, CodeForbidden, "only a controller node (node certificate of the cluster CA) may call the replica agent")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (a *Agent) state(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeError(w, http.StatusMethodNotAllowed, CodeMethod, "use GET")
		return
	}
	a.mu.Lock()
	rec := a.rec
	held, err := a.cfg.Net.Held()
	var carrier bool
	if err == nil {
		carrier, err = a.cfg.Net.Carrier()
	}
	a.mu.Unlock()
	if err != nil {
		writeError(w, http.StatusInternalServerError, CodeFailed, err.Error())
		return
	}
	st := State{Replica: a.cfg.Replica, Interface: a.linkName(), Address: a.cfg.Address.Addr().String(), Held: held, LinkUp: carrier}
	if rec.seen() {
		f := rec.fence()
		st.Fence, st.LastAction = &f, rec.Action
	}
	writeJSON(w, http.StatusOK, st)
}

// command runs one claim or release.
func (a *Agent) command(w http.ResponseWriter, r *http.Request, action Action) {
	start := time.Now()
	if r.Method != http.MethodPost {
		writeError(w, http.StatusMethodNotAllowed, CodeMethod, "use POST")
		return
	}
	caller, _ := a.cfg.Caller(r)
	cmd, err := decodeCommand(w, r)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			writeError(w, e.Status, e.Code, e.Message)
			return
		}
		writeError(w, http.StatusBadRequest, CodeBadRequest, err.Error())
		return
	}
	if msg := a.check(cmd); msg != "" {
		writeError(w, http.StatusBadRequest, CodeBadRequest, msg)
		return
	}
	log := a.log.With("action", string(action), "caller", caller, "term", cmd.Term, "generation", cmd.Generation)

	a.mu.Lock()
	defer a.mu.Unlock()
	locked := time.Now()
	cur := a.rec
	if cur.seen() {
		switch c := cmd.Fence.Compare(cur.fence()); {
		case c < 0:
			log.Warn("command refused: older than the highest fence seen", "highest", cur.fence().String())
			writeError(w, http.StatusConflict, CodeStaleFence,
				fmt.Sprintf("%s %s is older than %s, already seen; a newer leader or switch has spoken", action, cmd.Fence, cur.fence()))
			return
		case c == 0 && cur.Action != action:
			log.Warn("command refused: the same fence already carried the other action", "earlier", string(cur.Action))
			writeError(w, http.StatusConflict, CodeFenceConflict,
				fmt.Sprintf("%s %s: that fence already carried %s", action, cmd.Fence, cur.Action))
			return
		}
	}
	var saveTook time.Duration
	if !cur.seen() || cmd.Fence.Compare(cur.fence()) > 0 {
		saveStart := time.Now()
		next := fenceRecord{Version: stateVersion, Replica: a.cfg.Replica, Term: cmd.Term, Generation: cmd.Generation, Action: action}
		if err := saveFence(a.cfg.StatePath, next); err != nil {
			log.Error("command not carried out: the fence could not be saved", "err", err)
			writeError(w, http.StatusInternalServerError, CodeFailed, "the fence could not be saved, nothing changed: "+err.Error())
			return
		}
		a.rec = next
		saveTook = time.Since(saveStart)
	}
	// A newer command ends the announcements of an earlier claim.
	if a.stopAnnouncing != nil {
		a.stopAnnouncing()
		a.stopAnnouncing = nil
	}
	res := Result{Replica: a.cfg.Replica, Address: a.cfg.Address.Addr().String(), Action: action, Fence: a.rec.fence()}
	netStart := time.Now()
	switch action {
	case ActionClaim:
		// An address on a link without carrier reaches nobody, and its
		// announcement fails: say so, so that the leader connects the
		// NIC first, rather than fail in the announcement.
		if up, cerr := a.cfg.Net.Carrier(); cerr == nil && !up {
			log.Warn("claim refused: the service link has no carrier")
			writeError(w, http.StatusServiceUnavailable, CodeNoCarrier,
				fmt.Sprintf("the service link %s has no carrier (its NIC is disconnected); nothing changed", a.linkName()))
			return
		}
		res.Changed, err = a.cfg.Net.Claim()
		if err == nil {
			err = a.cfg.Net.Announce(1, 0)
		}
		if err == nil {
			a.announceRest()
		}
	case ActionRelease:
		res.Changed, err = a.cfg.Net.Release()
	}
	held, herr := a.cfg.Net.Held()
	if err == nil {
		err = herr
	}
	res.Held = held
	if err != nil {
		log.Error("command failed", "err", err, "held", held)
		writeError(w, http.StatusInternalServerError, CodeFailed, fmt.Sprintf("%s %s: %v", action, a.cfg.Address.Addr(), err))
		return
	}
	res.TookMicros = time.Since(start).Microseconds()
	// Where the time went: waiting for the command lock, saving the
	// fence, and the network calls (address, first announcement, read).
	log.Info("command carried out", "changed", res.Changed, "held", res.Held, "took_us", res.TookMicros,
		"lock_us", locked.Sub(start).Microseconds(), "save_us", saveTook.Microseconds(), "net_us", time.Since(netStart).Microseconds())
	writeJSON(w, http.StatusOK, res)
}

// announceRest sends the claim's other announcements in the background
// until they are done or a newer command stops them. Called with mu held.
func (a *Agent) announceRest() {
	n := a.cfg.Announcements - 1
	if n <= 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.stopAnnouncing = cancel
	a.announcing.Add(1)
	go func() {
		defer a.announcing.Done()
		t := time.NewTicker(a.cfg.AnnounceGap)
		defer t.Stop()
		for range n {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			a.mu.Lock()
			stopped := ctx.Err() != nil
			var err error
			if !stopped {
				err = a.cfg.Net.Announce(1, 0)
			}
			a.mu.Unlock()
			if stopped {
				return
			}
			if err != nil {
				a.log.Warn("announcement failed", "err", err)
			}
		}
	}()
}

func (a *Agent) check(c Command) string {
	switch {
	case c.Replica != a.cfg.Replica:
		return fmt.Sprintf("command for replica %q reached the agent of %q", c.Replica, a.cfg.Replica)
	case c.Address == "":
		return "address is required"
	case c.Term == 0:
		return "term must be at least 1"
	}
	addr, err := netip.ParseAddr(c.Address)
	if err != nil {
		return fmt.Sprintf("address %q is not an IP address", c.Address)
	}
	if addr != a.cfg.Address.Addr() {
		return fmt.Sprintf("address %s is not this agent's service address (%s)", addr, a.cfg.Address.Addr())
	}
	return ""
}

func decodeCommand(w http.ResponseWriter, r *http.Request) (Command, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return Command{}, fmt.Errorf("content type %q: send application/json", ct)
	}
	body := http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	var c Command
	if err := dec.Decode(&c); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return Command{}, &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge,
				Message: fmt.Sprintf("body over %d bytes", MaxBodyBytes)}
		}
		return Command{}, fmt.Errorf("body is not a command: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return Command{}, &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge,
				Message: fmt.Sprintf("body over %d bytes", MaxBodyBytes)}
		}
		return Command{}, errors.New("body holds more than one JSON value")
	}
	return c, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, errorBody{Error: &Error{Code: code, Message: msg}})
}

// Serve answers on ln with TLS (tlsCfg: transport.AgentServerTLS) until
// ctx ends, then stops accepting and waits at most 2 s for calls in
// flight.
func (a *Agent) Serve(ctx context.Context, ln net.Listener, tlsCfg *tls.Config) error {
	srv := &http.Server{
		Handler:           a.Handler(),
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	done := make(chan error, 1)
	go func() {
		if tlsCfg == nil {
			done <- srv.Serve(ln)
			return
		}
		done <- srv.ServeTLS(ln, "", "")
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	<-done
	a.mu.Lock()
	if a.stopAnnouncing != nil {
		a.stopAnnouncing()
	}
	a.mu.Unlock()
	a.announcing.Wait()
	if a.announcer != nil {
		a.announcer.Close()
	}
	return err
}
