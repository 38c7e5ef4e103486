package agent

import (
	"regexp"
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// registry is the node's Prometheus registry, which also remembers the
// name of every metric family registered on it — including vectors that
// have no series yet and so do not appear in a scrape. The dashboard and
// alert rules shipped in deploy/ are checked against these names.
type registry struct {
	*prometheus.Registry
	mu    sync.Mutex
	names map[string]bool
}

func newRegistry() *registry {
	return &registry{Registry: prometheus.NewRegistry(), names: map[string]bool{}}
}

// fqName reads a descriptor's fully qualified name from its String form,
// the only place the client library shows it.
var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// Register implements prometheus.Registerer.
func (r *registry) Register(c prometheus.Collector) error {
	if err := r.Registry.Register(c); err != nil {
		return err
	}
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	r.mu.Lock()
	defer r.mu.Unlock()
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			r.names[m[1]] = true
		}
	}
	return nil
}

// MustRegister implements prometheus.Registerer.
func (r *registry) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// MetricNames lists the metric families the node registered, sorted.
func (a *Agent) MetricNames() []string {
	a.reg.mu.Lock()
	defer a.reg.mu.Unlock()
	out := make([]string, 0, len(a.reg.names))
	for n := range a.reg.names {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
