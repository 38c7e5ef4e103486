package agent

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ars-project/ars/cmd/ars/internal/config"
)

// metricsOf starts a -dev node with a Docker host (the driver does not
// connect until it is used) and a notification sink configured, and
// returns the metric families it registered.
func metricsOf(t *testing.T) []string {
	t.Helper()
	cfg := DevConfig()
	cfg.Docker.Hosts = []config.DockerHost{{Name: "local", Endpoint: "unix:///nonexistent/ars-test/docker.sock"}}
	cfg.Notify = []config.NotifySink{{Name: "log", Exec: &config.NotifyExec{Path: "/bin/true"}}}
	a := startOnFreePorts(t, cfg, io.Discard)
	defer a.Shutdown()
	return a.MetricNames()
}

// promName finds metric names in a rules or dashboard file: every ars_
// name, without the histogram series suffixes.
var promName = regexp.MustCompile(`\bars_[a-z0-9_]+`)

// TestDeployNamesOnlyExportedMetrics: every metric the Grafana dashboard
// and the Prometheus rules in deploy/ use is one a node exports, so a
// renamed metric cannot leave a panel or an alert silently empty.
func TestDeployNamesOnlyExportedMetrics(t *testing.T) {
	names := metricsOf(t)
	if !slices.Contains(names, "ars_controller_switches_total") || !slices.Contains(names, "ars_docker_call_duration_seconds") {
		t.Fatalf("the node's metric names look incomplete: %v", names)
	}
	files, _ := filepath.Glob("../../../deploy/prometheus/*.yml")
	dash, _ := filepath.Glob("../../../deploy/grafana/*.json")
	files = append(files, dash...)
	if len(files) < 2 {
		t.Fatalf("deploy/ has %d rule and dashboard files, want both kinds", len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		used := map[string]bool{}
		for _, m := range promName.FindAllString(string(b), -1) {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(m, suffix); ok && slices.Contains(names, base) {
					m = base
				}
			}
			used[m] = true
		}
		if len(used) == 0 {
			t.Errorf("%s names no ars_ metric", f)
		}
		for m := range used {
			if !slices.Contains(names, m) {
				t.Errorf("%s uses %s, which no node exports", filepath.Base(f), m)
			}
		}
	}
}

// TestPromtoolChecksRules runs `promtool check rules` (Debian's
// prometheus package) on the rules in deploy/, and their unit tests.
func TestPromtoolChecksRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("ARS_REQUIRE_LAB") != "" {
			t.Fatalf("ARS_REQUIRE_LAB is set but promtool is not installed (make lab-deps)")
		}
		t.Skip("promtool is not installed (make lab-deps installs it)")
	}
	rules, _ := filepath.Glob("../../../deploy/prometheus/*.rules.yml")
	if len(rules) == 0 {
		t.Fatal("no rules in deploy/prometheus")
	}
	out, err := exec.Command(promtool, append([]string{"check", "rules"}, rules...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	tests, _ := filepath.Glob("../../../deploy/prometheus/*.test.yml")
	if len(tests) == 0 {
		t.Fatal("no rule tests in deploy/prometheus")
	}
	out, err = exec.Command(promtool, append([]string{"test", "rules"}, tests...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

// TestPrintMetricNames is a helper for whoever edits deploy/: go test
// -run TestPrintMetricNames -v ./cmd/ars/agent/ lists them.
func TestPrintMetricNames(t *testing.T) {
	if !testing.Verbose() {
		t.Skip("lists the metric names with -v")
	}
	for _, n := range metricsOf(t) {
		t.Log(n)
	}
}
