package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/transport"
)

// DefaultAddr is the node API address used when neither -addr nor
// ARS_HTTP_ADDR is given.
const DefaultAddr = "127.0.0.1:7500"

// Environment variables read as flag fallbacks.
const (
	EnvAddr          = "ARS_HTTP_ADDR"
	EnvToken         = "ARS_HTTP_TOKEN"
	EnvTokenFile     = "ARS_HTTP_TOKEN_FILE"
	EnvCACert        = "ARS_CACERT"
	EnvClientCert    = "ARS_CLIENT_CERT"
	EnvClientKey     = "ARS_CLIENT_KEY"
	EnvTLSServerName = "ARS_TLS_SERVER_NAME"
)

var globalFlagNames = []string{"addr", "token", "token-file", "ca-file", "client-cert", "client-key", "tls-server-name", "o", "timeout"}

// globals holds the global flags. The same variables are registered on the
// top-level flag set and on each command's, with the current value as the
// default, so a global flag given before the command survives.
type globals struct {
	getenv        func(string) string
	addr          string
	token         secret
	tokenFile     string
	caFile        string
	clientCert    string
	clientKey     string
	tlsServerName string
	output        string
	timeout       time.Duration
}

// secret is a flag value that never shows in help output.
type secret struct{ v string }

func (s *secret) String() string     { return "" }
func (s *secret) Set(v string) error { s.v = v; return nil }

func newGlobals(getenv func(string) string) *globals {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	g := &globals{getenv: getenv, output: "table", timeout: 10 * time.Second}
	g.addr = getenv(EnvAddr)
	if g.addr == "" {
		g.addr = DefaultAddr
	}
	g.caFile = getenv(EnvCACert)
	g.clientCert = getenv(EnvClientCert)
	g.clientKey = getenv(EnvClientKey)
	g.tlsServerName = getenv(EnvTLSServerName)
	return g
}

func (g *globals) register(fs *flag.FlagSet, api bool) {
	fs.StringVar(&g.output, "o", g.output, "output `format`: table or json")
	if !api {
		return
	}
	fs.StringVar(&g.addr, "addr", g.addr, "node API `address` (host:port or URL) [$"+EnvAddr+"]")
	fs.Var(&g.token, "token", "API `token` [$"+EnvToken+"]")
	fs.StringVar(&g.tokenFile, "token-file", g.tokenFile, "`file` holding the API token [$"+EnvTokenFile+"]")
	fs.StringVar(&g.caFile, "ca-file", g.caFile, "CA certificate `file` to verify the node [$"+EnvCACert+"]")
	fs.StringVar(&g.clientCert, "client-cert", g.clientCert, "client certificate `file` [$"+EnvClientCert+"]")
	fs.StringVar(&g.clientKey, "client-key", g.clientKey, "client key `file` [$"+EnvClientKey+"]")
	fs.StringVar(&g.tlsServerName, "tls-server-name", g.tlsServerName, "`name` expected in the node certificate [$"+EnvTLSServerName+"]")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "time limit for the operation (0 = none)")
}

// check validates global flag values (a usage error otherwise).
func (g *globals) check() error {
	switch g.output {
	case "table", "json":
	default:
		return UsageErrorf("-o %q: must be table or json", g.output)
	}
	if g.timeout < 0 {
		return UsageErrorf("-timeout %s: must not be negative", g.timeout)
	}
	if g.token.v != "" && g.tokenFile != "" {
		return UsageErrorf("use either -token or -token-file, not both")
	}
	if (g.clientCert == "") != (g.clientKey == "") {
		return UsageErrorf("-client-cert and -client-key go together")
	}
	return nil
}

// resolveToken applies the precedence -token, -token-file, $ARS_HTTP_TOKEN,
// $ARS_HTTP_TOKEN_FILE.
func (g *globals) resolveToken() (string, error) {
	readFile := func(path, from string) (string, error) {
		data, err := os.ReadFile(path)
		if err != nil {
			return "", UsageErrorf("%s: %v", from, err)
		}
		tok := strings.TrimSpace(string(data))
		if tok == "" {
			return "", UsageErrorf("%s: token file %s is empty", from, path)
		}
		return tok, nil
	}
	switch {
	case g.token.v != "":
		return g.token.v, nil
	case g.tokenFile != "":
		return readFile(g.tokenFile, "-token-file")
	case g.getenv(EnvToken) != "":
		return g.getenv(EnvToken), nil
	case g.getenv(EnvTokenFile) != "":
		return readFile(g.getenv(EnvTokenFile), EnvTokenFile)
	}
	return "", nil
}

// urlOf turns a node address (-addr, or one of -addrs) into a URL; see the
// package doc for the scheme rule.
func (g *globals) urlOf(addr string) (string, error) {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return "", UsageErrorf("-addr is empty")
	}
	if strings.Contains(addr, "://") {
		if !strings.HasPrefix(addr, "http://") && !strings.HasPrefix(addr, "https://") {
			return "", UsageErrorf("-addr %q: scheme must be http or https", addr)
		}
		return strings.TrimRight(addr, "/"), nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil { // no port: the API's default
		host = strings.Trim(addr, "[]")
		addr = net.JoinHostPort(host, api.DefaultAPIPort)
	}
	scheme := "https"
	if ip, err := netip.ParseAddr(host); (err == nil && ip.IsLoopback() || host == "localhost") &&
		g.caFile == "" && g.clientCert == "" {
		scheme = "http"
	}
	return scheme + "://" + addr, nil
}

// Env is what a running command gets: streams, output format and access to
// the node API.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Output is "table" or "json" (-o).
	Output string

	g       *globals
	cmd     *Command
	clients []*api.Client // closed when the command returns
	// parent is the run's context before the default -timeout; nil when
	// -timeout was given (see Unbounded).
	parent context.Context
}

// Unbounded returns ctx without the default -timeout, for a command that
// runs until it is interrupted (a followed stream); an explicit -timeout
// still applies. The context is still cancelled on SIGINT and SIGTERM.
func (e *Env) Unbounded(ctx context.Context) context.Context {
	if e.parent != nil {
		return e.parent
	}
	return ctx
}

// Getenv reads the environment the run was given (Streams.Getenv).
func (e *Env) Getenv(key string) string { return e.g.getenv(key) }

// close releases the clients' idle connections.
func (e *Env) close() {
	for _, c := range e.clients {
		c.Close()
	}
}

// JSONOutput reports whether -o json was given.
func (e *Env) JSONOutput() bool { return e.Output == "json" }

// Client returns an API client for -addr with the token and TLS settings.
// Errors loading TLS files are TLS failures (exit 3); a bad token file or
// address is a usage error (exit 2).
func (e *Env) Client() (*api.Client, error) {
	if e.cmd != nil && e.cmd.Local {
		return nil, errors.New("internal error: local command asked for an API client")
	}
	return e.ClientAt(e.g.addr)
}

// ClientAt is Client for another node's address (host:port or URL), with
// the same token and TLS settings.
func (e *Env) ClientAt(addr string) (*api.Client, error) {
	url, err := e.g.urlOf(addr)
	if err != nil {
		return nil, err
	}
	token, err := e.g.resolveToken()
	if err != nil {
		return nil, err
	}
	var tlsCfg *tls.Config
	if strings.HasPrefix(url, "https://") {
		tlsCfg, err = transport.ClientTLS(transport.TLSFiles{CA: e.g.caFile, Cert: e.g.clientCert, Key: e.g.clientKey}, e.g.tlsServerName)
		if err != nil {
			return nil, &tlsSetupError{err: err}
		}
	}
	c, err := api.NewClient(url, token, tlsCfg)
	if err != nil {
		return nil, UsageErrorf("-addr %q: %v", addr, err)
	}
	e.clients = append(e.clients, c)
	return c, nil
}

// Addr is the address the client talks to (for messages).
func (e *Env) Addr() string { return e.g.addr }

// Print writes v as indented JSON with -o json, else calls table with a
// tabwriter that is flushed afterwards.
func (e *Env) Print(v any, table func(w io.Writer)) error {
	if e.JSONOutput() {
		return e.JSON(v)
	}
	tw := NewTabWriter(e.Stdout)
	table(tw)
	return tw.Flush()
}

// JSON writes v as indented JSON and a newline.
func (e *Env) JSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding JSON output: %w", err)
	}
	_, err = e.Stdout.Write(append(b, '\n'))
	return err
}

// NewTabWriter is the tabwriter of every table: columns two spaces apart.
func NewTabWriter(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// YesNo is a table cell for a boolean.
func YesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
