package apiserver

import (
	"crypto/tls"
	"log/slog"
	"net/http"
	"time"
)

// HTTP server timeouts used by NewHTTPServer. Snapshot routes extend their
// own read and write deadlines (ServerConfig.SnapshotTimeout).
const (
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 60 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
)

// NewHTTPServer returns an http.Server for the API with timeouts that stop
// slow clients from holding connections: headers must arrive within 5 s,
// the whole request within 30 s, the response be written within 60 s, and
// idle keep-alive connections are closed after 2 minutes. tlsCfg (from
// ServerTLS) may be nil for plain HTTP. Serve it with
// srv.ServeTLS(ln, "", "") or srv.Serve(ln).
func NewHTTPServer(addr string, h http.Handler, tlsCfg *tls.Config, logger *slog.Logger) *http.Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: DefaultReadHeaderTimeout,
		ReadTimeout:       DefaultReadTimeout,
		WriteTimeout:      DefaultWriteTimeout,
		IdleTimeout:       DefaultIdleTimeout,
		MaxHeaderBytes:    DefaultMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.With("component", "http").Handler(), slog.LevelDebug),
	}
}
