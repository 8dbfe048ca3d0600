package main

import (
	"fmt"
	"image/color"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// writePlot draws the RSS and Go heap in use per idle agent against the agent count, of the
// hub and of the bare server, with the hub's RSS target, as a PNG at path.
func writePlot(r sweepResult, path string) error {
	if ext := strings.ToLower(filepath.Ext(path)); ext != ".png" {
		return fmt.Errorf("%s: the plot is a PNG; name it *.png", path)
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("sortie-bench agents: memory per idle agent (heartbeat %gs)", r.HeartbeatSeconds)
	p.X.Label.Text = "agents held by one server process"
	p.Y.Label.Text = "KiB per agent"
	p.Y.Min = 0
	top, ticks := 0.0, make([]plot.Tick, 0, len(r.Sizes))
	for _, s := range r.Sizes {
		top = max(top, s.Hub.RSSPerAgent, s.Bare.RSSPerAgent, r.TargetMemoryRatio*s.Bare.RSSPerAgent)
		ticks = append(ticks, plot.Tick{Value: float64(s.Agents), Label: fmt.Sprint(s.Agents)})
	}
	p.Y.Max = 1.6 * top / 1024 // room for the legend above the lines
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	p.Legend.Top = true
	p.Add(plotter.NewGrid())

	kib := func(f func(agentsResult) float64) plotter.XYs {
		xys := make(plotter.XYs, len(r.Sizes))
		for i, s := range r.Sizes {
			xys[i].X, xys[i].Y = float64(s.Agents), f(s)/1024
		}
		return xys
	}
	blue, grey := color.RGBA{R: 31, G: 119, B: 180, A: 255}, color.RGBA{R: 110, G: 110, B: 110, A: 255}
	series := []struct {
		name   string
		xys    plotter.XYs
		color  color.Color
		dashed bool
		shape  draw.GlyphDrawer
	}{
		{"sortie hub, RSS", kib(func(s agentsResult) float64 { return s.Hub.RSSPerAgent }), blue, false, draw.CircleGlyph{}},
		{"bare connect-go, RSS", kib(func(s agentsResult) float64 { return s.Bare.RSSPerAgent }), grey, false, draw.CircleGlyph{}},
		{"sortie hub, Go heap", kib(func(s agentsResult) float64 { return s.Hub.HeapPerAgent }), blue, true, draw.TriangleGlyph{}},
		{"bare connect-go, Go heap", kib(func(s agentsResult) float64 { return s.Bare.HeapPerAgent }), grey, true, draw.TriangleGlyph{}},
		{fmt.Sprintf("target: hub RSS <= %.1f x bare", r.TargetMemoryRatio),
			kib(func(s agentsResult) float64 { return r.TargetMemoryRatio * s.Bare.RSSPerAgent }), color.RGBA{R: 214, G: 39, B: 40, A: 255}, true, nil},
	}
	for _, s := range series {
		line, err := plotter.NewLine(s.xys)
		if err != nil {
			return err
		}
		line.Color = s.color
		line.Width = vg.Points(1.5)
		if s.dashed {
			line.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		}
		p.Add(line)
		if s.shape == nil {
			p.Legend.Add(s.name, line)
			continue
		}
		points, err := plotter.NewScatter(s.xys)
		if err != nil {
			return err
		}
		points.Color, points.Shape, points.Radius = s.color, s.shape, vg.Points(3)
		p.Add(points)
		p.Legend.Add(s.name, line, points)
	}
	return p.Save(8*vg.Inch, 5*vg.Inch, path)
}
