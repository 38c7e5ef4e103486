// Package dockertest holds what tests that need the machine's Docker
// engine share: the test DNS responder image (test/dnsd) and the Docker
// driver's address helper image (cmd/ars-nethelper), each built statically
// and imported as a one-file image (no registry needed), and private
// bridge networks on subnets no interface of the machine uses.
package dockertest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// DefaultSocket is the engine's usual unix socket.
const DefaultSocket = "/var/run/docker.sock"

// Socket is the engine socket tests use: $ARS_TEST_DOCKER_SOCKET or
// DefaultSocket.
func Socket() string {
	if v := os.Getenv("ARS_TEST_DOCKER_SOCKET"); v != "" {
		return v
	}
	return DefaultSocket
}

// CreateNetwork makes an internal bridge network (no route out of the
// machine) labelled ars.test=label on the first free /24 of
// 172.31.200.0-254.0 that no route of this machine uses (enough for the
// packages and worktrees that run Docker tests at the same time). The bridge is
// .1; the engine hands out addresses of its own accord only from the
// upper half (.128/25), so an address of the lower half (a service
// address) is never given to a container that did not ask for it: the
// Docker driver's address helper needs that.
func CreateNetwork(ctx context.Context, cli *client.Client, name, label string) (netip.Prefix, error) {
	return createNetwork(ctx, cli, name, label, true)
}

// CreateNetworkWithoutRange is CreateNetwork with the engine allocating
// from the whole subnet (no ip-range).
func CreateNetworkWithoutRange(ctx context.Context, cli *client.Client, name, label string) (netip.Prefix, error) {
	return createNetwork(ctx, cli, name, label, false)
}

func createNetwork(ctx context.Context, cli *client.Client, name, label string, upperRange bool) (netip.Prefix, error) {
	routes, _ := exec.Command("ip", "-4", "route").Output()
	for third := 200; third <= 254; third++ {
		p := netip.MustParsePrefix(fmt.Sprintf("172.31.%d.0/24", third))
		if strings.Contains(string(routes), p.String()) {
			continue
		}
		cfg := network.IPAMConfig{Subnet: p}
		if upperRange {
			cfg.Gateway = p.Addr().Next()
			cfg.IPRange = netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 31, byte(third), 128}), 25)
		}
		_, err := cli.NetworkCreate(ctx, name, client.NetworkCreateOptions{
			Driver:   "bridge",
			Internal: true,
			IPAM:     &network.IPAM{Config: []network.IPAMConfig{cfg}},
			Labels:   map[string]string{"ars.test": label},
		})
		if err == nil {
			return p, nil
		}
		if !strings.Contains(err.Error(), "overlap") {
			return netip.Prefix{}, fmt.Errorf("create network %s: %w", name, err)
		}
	}
	return netip.Prefix{}, fmt.Errorf("create network %s: no free /24 in 172.31.200-254", name)
}

// DNSImage builds test/dnsd statically and imports it as a one-file image
// tagged ars-lab/dnsd:<first 12 hex of the binary's sha256> (the tag
// images/build.sh gives it), unless that tag exists already.
func DNSImage(ctx context.Context, cli *client.Client) (string, error) {
	return staticImage(ctx, cli, "./test/dnsd", "dnsd", "ars-lab/dnsd", "ars test DNS responder", `ENTRYPOINT ["/dnsd"]`)
}

// HelperImage builds cmd/ars-nethelper, the Docker driver's address
// helper, statically and imports it as a one-file image tagged
// ars/nethelper:<first 12 hex of the binary's sha256> (the tag
// images/build.sh gives it), unless that tag exists already.
func HelperImage(ctx context.Context, cli *client.Client) (string, error) {
	return staticImage(ctx, cli, "./cmd/ars-nethelper", "ars-nethelper", "ars/nethelper", "ars address helper",
		`ENTRYPOINT ["/ars-nethelper"]`, `CMD ["serve"]`)
}

// staticImage builds the Go package pkg of this module statically as bin
// and imports it alone as repo:<content hash>.
func staticImage(ctx context.Context, cli *client.Client, pkg, bin, repo, msg string, changes ...string) (string, error) {
	root, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	dir, err := os.MkdirTemp("", "ars-img-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, bin)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(root)))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", pkg, err, out)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	tag := repo + ":" + hex.EncodeToString(sum[:])[:12]
	if _, err := cli.ImageInspect(ctx, tag); err == nil {
		return tag, nil
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: bin, Mode: 0o755, Size: int64(len(data)), ModTime: time.Unix(0, 0)}); err != nil {
		return "", err
	}
	if _, err := tw.Write(data); err != nil {
		return "", err
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	rc, err := cli.ImageImport(ctx, client.ImageImportSource{Source: &buf, SourceName: "-"}, tag,
		client.ImageImportOptions{Changes: changes, Message: msg})
	if err != nil {
		return "", fmt.Errorf("import image %s: %w", tag, err)
	}
	said, _ := io.ReadAll(rc)
	rc.Close()
	if _, err := cli.ImageInspect(ctx, tag); err != nil {
		return "", fmt.Errorf("import image %s: %w (engine said %s)", tag, err, said)
	}
	return tag, nil
}

// RemoveAll force-removes every container whose name contains namePart and
// then the given networks, ignoring what is already gone: the cleanup of a
// test run.
func RemoveAll(ctx context.Context, cli *client.Client, namePart string, networks ...string) {
	list, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("name", namePart)})
	if err == nil {
		for _, c := range list.Items {
			_, _ = cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true})
		}
	}
	for _, n := range networks {
		_, _ = cli.NetworkRemove(ctx, n, client.NetworkRemoveOptions{})
	}
}
