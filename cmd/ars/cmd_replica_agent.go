package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/ars-project/ars/cmd/internal/cli"
	"github.com/ars-project/ars/replicaagent"
	"github.com/ars-project/ars/transport"
)

// replicaAgentOS lists the operating systems the replica agent has a
// tested implementation for. Windows replicas keep NIC handover.
var replicaAgentOS = []string{"linux"}

func init() {
	app.Register(cli.Command{
		Name:    "replica-agent",
		Group:   groupOperations,
		Summary: "Run the replica agent beside one Linux replica (address handover)",
		Help: `Runs the replica agent of one replica until SIGINT/SIGTERM: an HTTPS server
that puts the service address (-address) on the replica's service link
(-interface) when the leader claims it, announces it with gratuitous ARPs,
and takes it off when the leader releases it. Only controller nodes may call
it (a node certificate of the cluster CA); it serves with the replica's
certificate (ars keygen -replicas NAME=ADDR). Every command carries the
leader's term and the switch generation; the highest pair seen is kept in
-state, and older commands are refused. See docs/operations.md, "Address
handover".

It needs CAP_NET_ADMIN and CAP_NET_RAW in the replica's network namespace,
and runs on Linux only: Windows replicas keep NIC handover.

  ars replica-agent -replica lin-bind -listen 10.0.1.21:7444 \
      -interface eth1 -address 10.0.0.53 -state /var/lib/ars/replica-agent.json \
      -ca ca.pem -cert replica-lin-bind.pem -key replica-lin-bind-key.pem

A container replica's agent runs on its Docker host, as root, not in the
container: with -container (the replica's container, ars-NAME) and -subnet
(the service network's subnet) instead of -interface, it enters the
container's network namespace and acts on the link with an address in that
subnet, following the container when it is created or started again.

  ars replica-agent -replica ctr-unbound -listen 10.0.1.5:7445 \
      -container ars-ctr-unbound -subnet 10.0.0.0/24 -address 10.0.0.53 \
      -state /var/lib/ars/agent-ctr-unbound.json \
      -ca ca.pem -cert replica-ctr-unbound.pem -key replica-ctr-unbound-key.pem`,
		Local: true,
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			replica := fs.String("replica", "", "the replica's `name` in its service (required)")
			listen := fs.String("listen", "", "`HOST:PORT` to serve on, an address the leaders reach (required)")
			iface := fs.String("interface", "", "the service link's `name` (a VM replica; required unless -container)")
			ctr := fs.String("container", "", "the container `name` of a container replica (with -subnet, instead of -interface)")
			subnet := fs.String("subnet", "", "the service network's `subnet` (with -container)")
			dockerHost := fs.String("docker-host", "unix:///var/run/docker.sock", "the Docker engine `endpoint` of -container (a local one: its namespaces are entered)")
			address := fs.String("address", "", "the service `address`, optionally with a prefix length (default /32) (required)")
			state := fs.String("state", "", "state `file` keeping the highest fence seen (required)")
			ca := fs.String("ca", "", "cluster CA certificate `file` (required)")
			cert := fs.String("cert", "", "the replica's certificate `file` (required)")
			key := fs.String("key", "", "the replica's key `file` (required)")
			announce := fs.Int("announce", replicaagent.DefaultAnnouncements, "gratuitous ARPs per claim (`1..10`)")
			gap := fs.Duration("announce-gap", replicaagent.DefaultAnnounceGap, "pause between gratuitous ARPs")
			logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn, error")
			return func(ctx context.Context, e *cli.Env, args []string) error {
				if !slices.Contains(replicaAgentOS, runtime.GOOS) {
					return fmt.Errorf("the replica agent has no tested implementation for %s (only %s); "+
						"use NIC handover for this replica", runtime.GOOS, strings.Join(replicaAgentOS, ", "))
				}
				switch {
				case *ctr == "" && *iface == "":
					return cli.UsageErrorf("-interface (a VM replica) or -container with -subnet (a container replica) is required")
				case *ctr != "" && *iface != "":
					return cli.UsageErrorf("-interface and -container: give one of them")
				case *ctr != "" && *subnet == "":
					return cli.UsageErrorf("-container needs -subnet, the service network's subnet")
				case *ctr == "" && *subnet != "":
					return cli.UsageErrorf("-subnet goes with -container")
				}
				for _, req := range []struct{ name, v string }{
					{"replica", *replica}, {"listen", *listen}, {"address", *address},
					{"state", *state}, {"ca", *ca}, {"cert", *cert}, {"key", *key},
				} {
					if req.v == "" {
						return cli.UsageErrorf("-%s is required", req.name)
					}
				}
				prefix, err := parseServiceAddress(*address)
				if err != nil {
					return cli.UsageErrorf("-address: %v", err)
				}
				var addresser replicaagent.Addresser
				if *ctr != "" {
					sub, err := netip.ParsePrefix(*subnet)
					if err != nil || !sub.Addr().Is4() || sub.Masked() != sub {
						return cli.UsageErrorf("-subnet %q: want an IPv4 subnet such as 10.0.0.0/24", *subnet)
					}
					if !sub.Contains(prefix.Addr()) {
						return cli.UsageErrorf("-address %s is not in -subnet %s", prefix.Addr(), sub)
					}
					eng, err := newDockerPids(*dockerHost, *replica)
					if err != nil {
						return err
					}
					defer eng.Close()
					c := &replicaagent.Container{Name: *ctr, Subnet: sub, Address: prefix, Engine: eng}
					defer c.Close()
					addresser = c
				}
				if *announce < 1 || *announce > 10 {
					return cli.UsageErrorf("-announce %d: must be 1..10", *announce)
				}
				if *gap <= 0 || *gap > time.Second {
					return cli.UsageErrorf("-announce-gap %s: must be in (0, 1s]", *gap)
				}
				var level slog.Level
				if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
					return cli.UsageErrorf("-log-level %q: want debug, info, warn or error", *logLevel)
				}
				tlsCfg, err := transport.AgentServerTLS(transport.TLSFiles{CA: *ca, Cert: *cert, Key: *key})
				if err != nil {
					return err
				}
				if name, ok := certReplicaName(tlsCfg); !ok || name != *replica {
					return fmt.Errorf("certificate %s is for replica %q, not %q", *cert, name, *replica)
				}
				log := slog.New(slog.NewTextHandler(e.Stderr, &slog.HandlerOptions{Level: level}))
				a, err := replicaagent.New(replicaagent.Config{
					Replica: *replica, Interface: *iface, Net: addresser, Address: prefix, StatePath: *state,
					Announcements: *announce, AnnounceGap: *gap, Log: log,
				})
				if err != nil {
					return err
				}
				ln, err := net.Listen("tcp", *listen)
				if err != nil {
					return fmt.Errorf("replica agent: %w", err)
				}
				where := []any{"interface", *iface}
				if *ctr != "" {
					where = []any{"container", *ctr, "subnet", *subnet, "docker_host", *dockerHost}
				}
				log.Info("replica agent serving", append(append([]any{"replica", *replica, "listen", ln.Addr().String()}, where...),
					"address", prefix.String(), "version", Version())...)
				err = a.Serve(ctx, ln, tlsCfg)
				if errors.Is(err, http.ErrServerClosed) || ctx.Err() != nil {
					log.Info("replica agent stopped")
					return nil
				}
				return err
			}
		},
	})
}

// parseServiceAddress reads an IPv4 address with an optional prefix
// length (default /32).
func parseServiceAddress(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		s += "/32"
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or ADDRESS/LENGTH", s)
	}
	if !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("%s: only IPv4 service addresses are supported", p.Addr())
	}
	return p, nil
}

// certReplicaName is the replica named by the agent's own certificate.
func certReplicaName(cfg *tls.Config) (string, bool) {
	if len(cfg.Certificates) == 0 || len(cfg.Certificates[0].Certificate) == 0 {
		return "", false
	}
	leaf, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
	if err != nil {
		return "", false
	}
	return transport.ReplicaNameOf(leaf)
}
