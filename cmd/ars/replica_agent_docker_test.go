package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// fakeEngine answers the Engine API's ping and container inspect from a
// table, on a unix socket.
func fakeEngine(t *testing.T, containers map[string]map[string]any) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.41")
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/_ping") {
			_, _ = w.Write([]byte("OK"))
			return
		}
		parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
		if len(parts) >= 3 && parts[len(parts)-1] == "json" && parts[len(parts)-3] == "containers" {
			if c, ok := containers[parts[len(parts)-2]]; ok {
				_ = json.NewEncoder(w).Encode(c)
				return
			}
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(map[string]string{"message": "No such container: " + parts[len(parts)-2]})
			return
		}
		w.WriteHeader(http.StatusNotImplemented)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return "unix://" + sock
}

func inspectAnswer(replica string, running bool, pid int) map[string]any {
	labels := map[string]string{}
	if replica != "" {
		labels["ars.replica"] = replica
	}
	return map[string]any{"Id": "abc", "Config": map[string]any{"Labels": labels},
		"State": map[string]any{"Running": running, "Pid": pid}}
}

// The container agent's engine view: the pid of the replica's running
// container, 0 for a stopped one, and a refusal for a container labelled
// for another replica or not by ars, or missing; a remote engine is
// refused at start (its namespaces cannot be entered).
func TestDockerPids(t *testing.T) {
	ep := fakeEngine(t, map[string]map[string]any{
		"ars-a":     inspectAnswer("a", true, 4242),
		"ars-a-off": inspectAnswer("a", false, 0),
		"ars-b":     inspectAnswer("b", true, 99),
		"foreign":   inspectAnswer("", true, 77),
	})
	d, err := newDockerPids(ep, "a")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	if pid, err := d.Pid(ctx, "ars-a"); err != nil || pid != 4242 {
		t.Errorf("running container: %d %v, want 4242", pid, err)
	}
	if pid, err := d.Pid(ctx, "ars-a-off"); err != nil || pid != 0 {
		t.Errorf("stopped container: %d %v, want 0", pid, err)
	}
	for _, name := range []string{"ars-b", "foreign", "missing"} {
		if pid, err := d.Pid(ctx, name); err == nil {
			t.Errorf("%s: pid %d, want a refusal", name, pid)
		}
	}
	if _, err := newDockerPids("tcp://10.0.0.1:2376", "a"); err == nil || !strings.Contains(err.Error(), "unix://") {
		t.Errorf("a tcp engine: %v, want a refusal naming unix://", err)
	}
}
