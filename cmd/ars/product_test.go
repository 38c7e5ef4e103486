package main

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// ars help lists the product's commands under Cluster, Services, Attacks
// & response and Operations, in that order, and nothing of the lab, the
// benchmark or the chaos suite (ars-lab's), nor internal commands.
func TestHelpGroupsTheProduct(t *testing.T) {
	r := ars(t, nil, "", "help").OK(t)
	at := -1
	for _, g := range []string{"Cluster:", "Services:", "Attacks & response:", "Operations:"} {
		i := strings.Index(r.Stdout, "\n"+g+"\n")
		if i < at {
			t.Errorf("help: group %q missing or out of order:\n%s", g, r.Stdout)
		}
		at = i
	}
	groupOf := map[string]string{
		"status": "Cluster:", "raft peers": "Cluster:", "service apply": "Services:", "history": "Services:",
		"alert": "Attacks & response:", "watch apparmor": "Attacks & response:", "replica quarantine": "Attacks & response:",
		"agent": "Operations:", "keygen": "Operations:", "snapshot save": "Operations:", "version": "Operations:",
	}
	listed := map[string]string{} // command line -> the heading above it
	heading := ""
	for _, line := range strings.Split(r.Stdout, "\n") {
		switch {
		case strings.HasSuffix(line, ":") && !strings.HasPrefix(line, " "):
			heading = line
		case strings.HasPrefix(line, "  "):
			listed[strings.TrimSpace(line)] = heading
		}
	}
	for name, group := range groupOf {
		found := false
		for line, h := range listed {
			if strings.HasPrefix(line, name+"  ") {
				found = h == group
			}
		}
		if !found {
			t.Errorf("help: %q is not under %q:\n%s", name, group, r.Stdout)
		}
	}
	if m := regexp.MustCompile(`(?i)\b(lab|bench|chaos|serve)\b`).FindString(r.Stdout); m != "" {
		t.Errorf("help mentions %q:\n%s", m, r.Stdout)
	}
	// The old names say where the commands went.
	ars(t, nil, "", "lab", "up").Fails(t, 2, `unknown command "lab": the lab's commands are ars-lab's now`)
	for _, word := range []string{"bench", "chaos"} {
		ars(t, nil, "", word).Fails(t, 2, `unknown command "`+word+`": it is ars-lab `+word+` now`)
	}
}

// The product binary links no lab code (lab, lab/bench, lab/chaos,
// lab/netlab, lab/vcwatch) and no gonum (the bench's charts): they belong
// to ars-lab.
func TestProductImportsNoLab(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list the dependencies with")
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go list -deps: %v\n%s", err, stderr)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed %d packages: %q", len(deps), out)
	}
	for _, p := range deps {
		if p == "github.com/ars-project/ars/lab" || strings.HasPrefix(p, "github.com/ars-project/ars/lab/") ||
			strings.HasPrefix(p, "gonum.org/") {
			t.Errorf("ars depends on %s", p)
		}
	}
}
