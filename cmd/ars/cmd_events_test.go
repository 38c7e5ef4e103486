package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/cmd/internal/cli"
)

// ars events lists what was committed, for people and as JSON lines; bad
// flags are usage errors.
func TestEventsCommand(t *testing.T) {
	n := alertNode(t) // dns: win-bind active, lin-unbound standby
	env := n.env(t)
	ars(t, env, "", "switch", "dns", "-reason", "drill").OK(t)

	r := ars(t, n.roleEnv(t, "reader"), "", "events").OK(t)
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if len(lines) < 3 {
		t.Fatalf("events:\n%s", r.Stdout)
	}
	for _, want := range []string{"service.apply", "switch.request", "switch request", "win-bind -> lin-unbound (manual"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("events lack %q:\n%s", want, r.Stdout)
		}
	}

	r = ars(t, env, "", "events", "-o", "json", "-tail", "1").OK(t)
	var e api.Event
	if err := json.Unmarshal([]byte(strings.TrimSpace(r.Stdout)), &e); err != nil || e.Type != "switch" || e.Service != "dns" {
		t.Fatalf("-o json -tail 1: %v %q", err, r.Stdout)
	}
	r = ars(t, env, "", "events", "-after", "1", "-service", "nope").OK(t)
	if strings.TrimSpace(r.Stdout) != "" {
		t.Fatalf("events of an unknown service: %q", r.Stdout)
	}
	ars(t, env, "", "events", "-after", "-5").Fails(t, cli.ExitUsage, "-after")
	ars(t, env, "", "events", "-tail", "9999").Fails(t, cli.ExitUsage, "-tail")
	ars(t, env, "", "events", "extra").Fails(t, cli.ExitUsage, "usage: ars events")
}

func TestEventDetailNotifyCursor(t *testing.T) {
	got := (api.Event{Type: "notify.cursor", Body: []byte(`{"sink":"pager","index":41}`)}).Describe()
	if want := "notification sink pager handled the events up to 41"; got != want {
		t.Errorf("detail %q, want %q", got, want)
	}
}
