package apiserver

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"time"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/fsm"
)

var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"roleClass": func(r fsm.Role) string { return "role-" + string(r) },
	"stamp": func(ns int64) string {
		if ns == 0 {
			return "-"
		}
		return time.Unix(0, ns).UTC().Format("2006-01-02 15:04:05.000")
	},
	"ms": func(v *float64) string {
		if v == nil {
			return "-"
		}
		return fmt.Sprintf("%.1f ms", *v)
	},
	"lost": func(r fsm.SwitchRecord) string {
		if r.ProbesLost == nil || r.ProbesSent == nil {
			return "-"
		}
		return fmt.Sprintf("%d of %d", *r.ProbesLost, *r.ProbesSent)
	},
	"ptr": func(v float64) *float64 { return &v },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<noscript><meta http-equiv="refresh" content="5"></noscript>
<title>ars · {{.Status.Node}}</title>
<script src="/ui/status.js" defer></script>
<style>
body{font-family:system-ui,sans-serif;margin:1em;color:#222}
.scroll{overflow-x:auto;margin-bottom:1.5em}
table{border-collapse:collapse}
caption{text-align:left;font-size:.9em;color:#555;padding:.25em 0}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}
.warn{background:#fde2e2;padding:.5em;border:1px solid #e99}
.role-active{color:#fff;background:#2a7d2a}
.role-standby{background:#cfe8cf}
.role-suspended{background:#e6e6e6}
.role-quarantined{color:#fff;background:#b22}
.role-recovering{background:#fbe3b5}
.role-maintenance{background:#d7d7f5}
</style>
</head>
<body data-after="{{.After}}">
<h1>ars node {{.Status.Node}}</h1>
<p id="live">Updated when the page loaded; without scripts it reloads every 5 s.</p>
{{if .Status.Dev}}<p class="warn">Development mode: API authentication is disabled.</p>{{end}}
<section id="node" class="scroll">
<table>
<tr><th>State</th><td>{{.Status.State}}</td></tr>
<tr><th>Leader</th><td>{{if .Status.Leader}}{{.Status.Leader}}{{else}}<em>none</em>{{end}}</td></tr>
<tr><th>Term</th><td>{{.Status.Term}}</td></tr>
<tr><th>Commit / applied / last log index</th><td>{{.Status.CommitIndex}} / {{.Status.AppliedIndex}} / {{.Status.LastLogIndex}}</td></tr>
<tr><th>Last contact</th><td>{{.Status.LastContact}}</td></tr>
<tr><th>Members / voters</th><td>{{.Status.Members}} / {{.Status.Voters}}</td></tr>
<tr><th>Version</th><td>{{.Status.Version}}</td></tr>
{{with .Status.Disk}}<tr><th>Data directory</th><td{{if not .Healthy}} class="warn"{{end}}>{{if .Healthy}}healthy{{else}}unhealthy: {{.Cause}}{{end}}{{if .FreeBytes}}; {{.FreeBytes}} bytes free{{end}} (checked {{.CheckedAt}})</td></tr>{{end}}
</table>
</section>
<section id="members">
<h2>Members</h2>
<div class="scroll"><table>
<tr><th>Name</th><th>Status</th><th>Voter</th><th>Leader</th><th>Raft</th><th>API</th><th>Gossip</th></tr>
{{range .Members}}<tr><td>{{.Name}}</td><td>{{.Status}}</td><td>{{if .Voter}}yes{{end}}</td><td>{{if .Leader}}yes{{end}}</td><td>{{.RaftAddr}}</td><td>{{.APIAddr}}</td><td>{{.GossipAddr}}</td></tr>
{{else}}<tr><td colspan="7"><em>no members known</em></td></tr>{{end}}
</table></div>
</section>
<section id="services">
<h2>Services</h2>
{{range .Services}}
<h3>{{.Name}} <small>({{.Address}}, generation {{.Generation}}{{if .Intent}}, switch in progress{{end}})</small></h3>
<p>Serving: {{if .Active}}<strong>{{.Active}}</strong>{{else}}<em>no active replica</em>{{end}}</p>
<div class="scroll"><table>
<tr><th>Replica</th><th>Role</th><th>Impl</th><th>OS</th><th>Platform</th><th>Handover</th></tr>
{{range .Replicas}}<tr><td>{{.Name}}</td><td class="{{roleClass .Role}}">{{.Role}}</td><td>{{.Impl}}</td><td>{{.OS}}</td><td>{{.Platform}}</td><td>{{.Handover}}</td></tr>
{{end}}</table></div>
{{if .Switches}}<div class="scroll"><table>
<caption>Recent switches, newest last. Total: trigger to verified. Outage: no answer to the leader's probes through the service address, with the probes lost. Exposure: the old replica still on the service network after the trigger. Handover: how the address moved (the new replica's NIC, or its replica agent); old held: how long the old replica kept the address after the new one had it. "-": not measured.</caption>
<tr><th>Gen</th><th>Started (UTC)</th><th>From</th><th>To</th><th>Reason</th><th>Mode</th><th>Total</th><th>Outage</th><th>Probes lost</th><th>Exposure</th><th>Handover</th><th>Old held</th><th>Verified</th></tr>
{{range .Switches}}<tr><td>{{.Generation}}</td><td>{{stamp .StartedAt}}</td><td>{{.From}}</td><td>{{.To}}</td><td>{{.Reason}}</td><td>{{.Mode}}</td><td>{{if .Done}}{{ms (ptr .TotalMS)}}{{else}}-{{end}}</td><td>{{ms .OutageMS}}</td><td>{{lost .}}</td><td>{{ms .ExposureMS}}</td><td>{{if .Handover}}{{.Handover}}{{else}}-{{end}}</td><td>{{ms .OldHeldMS}}</td><td>{{if .Done}}yes{{else}}no{{end}}</td></tr>
{{end}}</table></div>{{end}}
{{else}}<p><em>No services defined.</em></p>{{end}}
</section>
<section id="events">
<h2>Events</h2>
<div class="scroll"><table>
<caption>What the cluster committed, newest first: the last {{len .Events}} when the page loaded, then each one as this node applies it.</caption>
<thead><tr><th>Index</th><th>Command</th><th>Service</th><th>What it did</th></tr></thead>
<tbody id="event-rows">
{{range .Events}}<tr><td>{{.Index}}</td><td>{{.Type}}</td><td>{{if .Service}}{{.Service}}{{else}}-{{end}}</td><td>{{.Detail}}{{if .Refused}} [refused: {{.Refused}}]{{end}}</td></tr>
{{end}}</tbody>
</table></div>
</section>
</body>
</html>
`))

// statusPageData is what the status page renders.
type statusPageData struct {
	Status   api.Status
	Members  []api.Member
	Services []pageService
	// Events: the last pageEvents events, newest first; After the newest
	// one's index, from which the page's script follows the stream.
	Events []api.Event
	After  uint64
}

// pageEvents is how many recent events the page shows when it loads.
const pageEvents = 20

type pageService struct {
	Name, Address string
	Generation    uint64
	Intent        bool
	Active        string // "" when none
	Replicas      []pageReplica
	Switches      []fsm.SwitchRecord // the last pageSwitches, newest last
}

// pageSwitches is how many recent switches the page shows per service.
const pageSwitches = 5

type pageReplica struct {
	Name               string
	Role               fsm.Role
	Impl, OS, Platform string
	Handover           string // "nic" or "address" (the spec's, not a measurement)
}

func pageServices(list []fsm.Service) []pageService {
	out := make([]pageService, 0, len(list))
	for _, svc := range list {
		ps := pageService{Name: svc.Spec.Name, Address: svc.Spec.Address, Generation: svc.Generation, Intent: svc.Intent != nil,
			Switches: svc.History[max(len(svc.History)-pageSwitches, 0):]}
		if a, ok := svc.Active(); ok {
			ps.Active = a.Name
		}
		specs := map[string]fsm.ReplicaSpec{}
		for _, rs := range svc.Spec.Replicas {
			specs[rs.Name] = rs
		}
		for _, st := range svc.Replicas {
			rs := specs[st.Name]
			ps.Replicas = append(ps.Replicas, pageReplica{Name: st.Name, Role: st.Role,
				Impl: rs.Impl, OS: rs.OS, Platform: rs.Platform, Handover: handoverName(rs)})
		}
		out = append(out, ps)
	}
	return out
}

func (s *Server) handleStatusPage(w http.ResponseWriter, r *http.Request) error {
	data := statusPageData{Status: wireStatus(s.b.Status()), Members: wireMembers(s.b.Members()), Services: pageServices(s.b.Services())}
	data.Events, data.After = s.recentEvents(pageEvents)
	var buf bytes.Buffer
	if err := statusPage.Execute(&buf, data); err != nil {
		return fmt.Errorf("rendering status page: %w", err)
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", statusPageCSP)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
	return nil
}

// statusPageCSP lets the page run its own script and read the API of its
// own node, and nothing else.
const statusPageCSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'self'; connect-src 'self'"

// recentEvents is the last n events this node holds (more if more came
// while it read), newest first, and the index the page's script follows
// the stream from: the newest one read.
func (s *Server) recentEvents(n int) ([]api.Event, uint64) {
	oldest, last := s.b.EventRange()
	after := max(oldest, last-min(last, uint64(n)))
	var out []api.Event
	for len(out) < n {
		batch, _, err := s.b.Events(after, n)
		if err != nil || len(batch) == 0 {
			break
		}
		for _, e := range batch {
			out = append(out, wireEvent(e))
			after = e.Index
		}
	}
	slices.Reverse(out)
	return out, after
}

//go:embed status.js
var statusScript []byte

// handleStatusScript serves the status page's script: it follows the
// event stream, adds each event to the page and reloads the page's
// sections from the node when the state may have changed.
func (s *Server) handleStatusScript(w http.ResponseWriter, r *http.Request) error {
	h := w.Header()
	h.Set("Content-Type", "text/javascript; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(statusScript)
	return nil
}

// handoverName is a replica's handover as the spec says it ("nic" for the
// default).
func handoverName(r fsm.ReplicaSpec) string {
	if r.AddressHandover() {
		return fsm.HandoverAddress
	}
	return "nic"
}
