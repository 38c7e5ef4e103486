package bench

import (
	"fmt"
	"image/color"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg/draw"
)

// ScaleChartFile is the chart WriteScale writes beside scale.json.
const ScaleChartFile = "scale.png"

// scaleSeries is one line of a scale panel: a figure of each run, nil
// where it was not measured (that N is left out of the line, never 0).
type scaleSeries struct {
	name  string
	color color.RGBA
	value func(ScaleRun) *float64
}

var (
	blue   = color.RGBA{R: 0x1f, G: 0x6f, B: 0xb4, A: 0xff}
	orange = color.RGBA{R: 0xe8, G: 0x7d, B: 0x0e, A: 0xff}
	green  = color.RGBA{R: 0x2c, G: 0x9a, B: 0x3c, A: 0xff}
	red    = color.RGBA{R: 0xc6, G: 0x2a, B: 0x2b, A: 0xff}
)

func idleUse(follower bool, f func(NodeUse) float64) func(ScaleRun) *float64 {
	return func(r ScaleRun) *float64 {
		switch {
		case r.Idle == nil, follower && r.Idle.Follower == nil:
			return nil
		case follower:
			return ptrTo(f(*r.Idle.Follower))
		}
		return ptrTo(f(r.Idle.Leader))
	}
}

func ptrTo(v float64) *float64 { return &v }

// scalePanels are the chart's panels: CPU, memory and times against N.
var scalePanels = []struct {
	title, unit string
	series      []scaleSeries
}{
	{"CPU against services (share of one core)", "CPU %", []scaleSeries{
		{"leader, idle", blue, idleUse(false, func(u NodeUse) float64 { return u.CPUPercent })},
		{"follower, idle", green, idleUse(true, func(u NodeUse) float64 { return u.CPUPercent })},
		{"leader, concurrent DoS", red, func(r ScaleRun) *float64 {
			if r.Attacks == nil {
				return nil
			}
			return ptrTo(r.Attacks.Leader.CPUPercent)
		}},
	}},
	{"Resident set against services (mean)", "RSS MB", []scaleSeries{
		{"leader, idle", blue, idleUse(false, func(u NodeUse) float64 { return u.RSSMeanMB })},
		{"follower, idle", green, idleUse(true, func(u NodeUse) float64 { return u.RSSMeanMB })},
	}},
	{"Times against services", "ms", []scaleSeries{
		{"DoS detection p99", blue, func(r ScaleRun) *float64 {
			if r.Detection == nil {
				return nil
			}
			return ptrTo(r.Detection.P99)
		}},
		{"concurrent DoS outage p99", orange, func(r ScaleRun) *float64 {
			if r.Concurrent == nil || r.Concurrent.Outage == nil {
				return nil
			}
			return ptrTo(r.Concurrent.Outage.P99)
		}},
		{"kill -9 to every service judged and reconciled", red, func(r ScaleRun) *float64 {
			if r.Takeover == nil {
				return nil
			}
			return r.Takeover.ReadyMS
		}},
	}},
}

// ScaleChart renders f as a PNG: one panel each for CPU, memory and
// times, with the number of services on a logarithmic x axis and one
// line per figure through the runs that measured it.
func ScaleChart(f ScaleFile) ([]byte, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	var panels [][]*plot.Plot
	for _, sp := range scalePanels {
		p := newPlot(sp.title)
		p.X.Label.Text, p.Y.Label.Text = "services", sp.unit
		p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
		p.Add(plotter.NewGrid())
		lines := 0
		for _, s := range sp.series {
			var xys plotter.XYs
			for _, r := range sortedRuns(f.Runs) {
				if v := s.value(r); v != nil {
					xys = append(xys, plotter.XY{X: float64(r.Services), Y: *v})
				}
			}
			if len(xys) == 0 {
				continue
			}
			l, pts, err := plotter.NewLinePoints(xys)
			if err != nil {
				return nil, fmt.Errorf("bench: scale chart: %w", err)
			}
			l.Color, pts.Color, pts.Shape = s.color, s.color, draw.CircleGlyph{}
			p.Add(l, pts)
			p.Legend.Add(s.name, l, pts)
			lines++
		}
		if lines == 0 {
			p = notePanel(sp.title, "not measured")
		} else {
			p.Legend.Top, p.Legend.Left = true, true
			p.Y.Min = 0
		}
		panels = append(panels, []*plot.Plot{p})
	}
	return stackPNG(panels, chartPanelHeight*len(panels)*2/3, "scale chart")
}

// sortedRuns is a copy of rs by N.
func sortedRuns(rs []ScaleRun) []ScaleRun {
	out := slices.Clone(rs)
	slices.SortFunc(out, func(a, b ScaleRun) int { return a.Services - b.Services })
	return out
}
