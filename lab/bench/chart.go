package bench

import (
	"bytes"
	"fmt"
	"image/color"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Chart size: the canvas is drawn at 72 dpi, so one point is one pixel.
const (
	chartWidth       = 1200
	chartPanelHeight = 600
)

// modeColor is the colour of a mode's bars and markers.
func modeColor(mode string) color.RGBA {
	switch mode {
	case ModeARS:
		return color.RGBA{R: 0x1f, G: 0x6f, B: 0xb4, A: 0xff}
	case ModePaperSDK:
		return color.RGBA{R: 0xe8, G: 0x7d, B: 0x0e, A: 0xff}
	case ModePaperCLI:
		return color.RGBA{R: 0x2c, G: 0x9a, B: 0x3c, A: 0xff}
	case ModeDNSDist:
		return color.RGBA{R: 0xc6, G: 0x2a, B: 0x2b, A: 0xff}
	}
	return color.RGBA{R: 0x70, G: 0x70, B: 0x70, A: 0xff}
}

// tint mixes c halfway with white, for the bar fill.
func tint(c color.RGBA) color.RGBA {
	mix := func(v uint8) uint8 { return uint8((int(v) + 0xff) / 2) }
	return color.RGBA{R: mix(c.R), G: mix(c.G), B: mix(c.B), A: 0xff}
}

// Chart renders f as a PNG in the style of the research figure: one panel
// per profile (1200×600 px each, stacked), the scenarios on the x axis and,
// for each mode, a bar up to the maximum downtime with a marker at the mean
// downtime. Not-run results are left out; a profile with nothing to show, or
// a file with no results, gets a panel with a note instead.
func Chart(f File) ([]byte, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	var profiles []string
	for _, r := range f.Scenarios {
		if !slices.Contains(profiles, r.Profile) {
			profiles = append(profiles, r.Profile)
		}
	}
	slices.Sort(profiles)
	var panels [][]*plot.Plot
	for _, p := range profiles {
		panels = append(panels, []*plot.Plot{panel(p, f.Scenarios)})
	}
	if len(panels) == 0 {
		panels = [][]*plot.Plot{{notePanel("Downtime per scenario", "no results")}}
	}

	return stackPNG(panels, chartPanelHeight*len(panels), "chart")
}

// stackPNG draws one-column panels stacked in a PNG of height points;
// what names the chart in an error.
func stackPNG(panels [][]*plot.Plot, height int, what string) ([]byte, error) {
	img := vgimg.NewWith(vgimg.UseWH(vg.Length(chartWidth), vg.Length(height)), vgimg.UseDPI(72))
	tiles := draw.Tiles{Rows: len(panels), Cols: 1, PadTop: 10, PadBottom: 10, PadLeft: 10, PadRight: 20, PadY: 30}
	canvases := plot.Align(panels, tiles, draw.New(img))
	for i := range panels {
		panels[i][0].Draw(canvases[i][0])
	}
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("bench: encode %s: %w", what, err)
	}
	return buf.Bytes(), nil
}

// panel plots the results of one profile that ran.
func panel(profile string, all []Result) *plot.Plot {
	title := fmt.Sprintf("Downtime per scenario, profile %s (bar = max, dot = mean)", profile)
	var rs []Result
	for _, r := range sorted(all) {
		if r.Profile == profile && r.Status == "" {
			rs = append(rs, r)
		}
	}
	if len(rs) == 0 {
		return notePanel(title, "nothing to chart: no scenario of this profile ran (see latest.md)")
	}
	var names, modes []string
	for _, r := range rs {
		if !slices.Contains(names, r.Name) {
			names = append(names, r.Name)
		}
		if !slices.Contains(modes, r.Mode) {
			modes = append(modes, r.Mode)
		}
	}
	slices.SortFunc(modes, func(a, b string) int { return modeRank(a) - modeRank(b) })

	p := newPlot(title)
	p.Y.Label.Text = "downtime (ms)"
	labels := make([]string, len(names))
	for i, n := range names {
		labels[i] = strings.Replace(n, "/", "\n", 1)
	}
	p.NominalX(labels...)
	grid := plotter.NewGrid()
	grid.Vertical.Color = nil
	p.Add(grid)

	const group = 0.8 // share of a scenario's slot taken by its bars
	width := group / float64(len(modes))
	top := 0.0
	for j, m := range modes {
		s := &series{width: width, color: modeColor(m)}
		for _, r := range rs {
			if r.Mode != m {
				continue
			}
			x := float64(slices.Index(names, r.Name)) - group/2 + width*(float64(j)+0.5)
			s.bars = append(s.bars, bar{x: x, max: r.Downtime.Max, mean: r.Downtime.Mean})
			top = max(top, r.Downtime.Max)
		}
		p.Add(s)
		p.Legend.Add(m, s)
	}
	if top == 0 {
		top = 1
	}
	p.X.Min, p.X.Max = -0.5, float64(len(names))-0.5
	p.Y.Min, p.Y.Max = 0, top*1.25 // head room for the legend
	p.X.Padding, p.Y.Padding = 0, 0
	p.Y.Tick.Marker = plainTicks{}
	p.Legend.Top = true
	p.Legend.XOffs = -10
	p.Legend.Padding = 4
	p.Legend.ThumbnailWidth = 24
	p.Legend.TextStyle.Font.Size = 13
	return p
}

// plainTicks are the default ticks labelled without trailing zeros.
type plainTicks struct{}

func (plainTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = strconv.FormatFloat(ts[i].Value, 'g', 10, 64)
		}
	}
	return ts
}

func newPlot(title string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = 16
	p.Title.Padding = 10
	p.X.Tick.Label.Font.Size = 12
	p.Y.Tick.Label.Font.Size = 12
	p.Y.Label.TextStyle.Font.Size = 13
	return p
}

// notePanel is an axis-less panel showing a title and a note.
func notePanel(title, note string) *plot.Plot {
	p := newPlot(title)
	p.HideAxes()
	p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = 0, 1, 0, 1
	p.Add(noteText(note))
	return p
}

type noteText string

func (n noteText) Plot(c draw.Canvas, _ *plot.Plot) {
	sty := draw.TextStyle{
		Color:   color.Gray{Y: 0x40},
		Font:    font.From(plot.DefaultFont, 16),
		XAlign:  draw.XCenter,
		YAlign:  draw.YCenter,
		Handler: plot.DefaultTextHandler,
	}
	c.FillText(sty, c.Center(), string(n))
}

type bar struct{ x, max, mean float64 }

// series draws one mode's bars (maximum) and markers (mean); x and width are
// in data units, so the bars follow the nominal x axis.
type series struct {
	bars  []bar
	width float64
	color color.RGBA
}

func (s *series) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	outline := draw.LineStyle{Color: s.color, Width: vg.Points(1)}
	for _, b := range s.bars {
		x0, x1 := trX(b.x-s.width/2), trX(b.x+s.width/2)
		y0, y1 := trY(0), trY(b.max)
		rect := []vg.Point{{X: x0, Y: y0}, {X: x1, Y: y0}, {X: x1, Y: y1}, {X: x0, Y: y1}, {X: x0, Y: y0}}
		c.FillPolygon(tint(s.color), c.ClipPolygonXY(rect))
		c.StrokeLines(outline, c.ClipLinesXY(rect)...)
		s.marker(&c, vg.Point{X: trX(b.x), Y: trY(b.mean)}, vg.Points(5))
	}
}

func (s *series) marker(c *draw.Canvas, pt vg.Point, r vg.Length) {
	c.DrawGlyph(draw.GlyphStyle{Color: s.color, Radius: r, Shape: draw.CircleGlyph{}}, pt)
	c.DrawGlyph(draw.GlyphStyle{Color: color.Black, Radius: r, Shape: draw.RingGlyph{}}, pt)
}

func (s *series) DataRange() (xmin, xmax, ymin, ymax float64) {
	if len(s.bars) == 0 {
		return 0, 0, 0, 0
	}
	xmin, xmax = s.bars[0].x, s.bars[0].x
	for _, b := range s.bars {
		xmin, xmax, ymax = min(xmin, b.x), max(xmax, b.x), max(ymax, b.max)
	}
	return xmin - s.width/2, xmax + s.width/2, 0, ymax
}

// Thumbnail draws the legend entry: a bar with a mean marker.
func (s *series) Thumbnail(c *draw.Canvas) {
	r := c.Rectangle
	rect := []vg.Point{r.Min, {X: r.Max.X, Y: r.Min.Y}, r.Max, {X: r.Min.X, Y: r.Max.Y}}
	c.FillPolygon(tint(s.color), rect)
	s.marker(c, c.Center(), vg.Points(4))
}
