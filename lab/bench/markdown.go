package bench

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// tableNote explains the units and the "vs ars" column.
const tableNote = `Durations are in milliseconds: mean, p50 (median, interpolated between the
two middle trials when their number is even) and max over the trials of each row.
Lost queries are counted per trial. **vs ars** compares mean downtimes within a
scenario and profile: ` + "`ars = N % of this`" + ` means ars's mean downtime is N % of this
mode's (ars mean ÷ this mean × 100; under 100 means ars was down for less time).
It is blank on ars rows and "–" when ars has no result there or this mean is 0.
**exposure** (where measured) is how long the replica switched away from stayed
on the service address after the trigger, from the switch record: until its
replica agent released the address or its NIC detach returned; "(k of n)" when
only k of the row's n trials measured it.`

// Markdown renders f as Markdown: the run's metadata, a note on the columns
// and one table per profile, rows sorted as in latest.json. Not-run rows read
// "not run: REASON"; a row with a note has "(note N)" after its mode and
// the note under its table, numbered per table; failed trials are listed
// under their table. An
// "outages" pair of columns is added to a profile's table when one of its
// results counts outages.
func Markdown(f File) string {
	var b strings.Builder
	b.WriteString("# Benchmark results\n\n")
	for _, m := range []struct{ k, v string }{
		{"machine", f.Machine},
		{"started", formatTime(f.Started)},
		{"go", f.Go},
		{"command", f.Command},
		{"load average at the start (1, 5, 15 min)", f.LoadStart},
		{"load average at the end", f.LoadEnd},
	} {
		if m.v != "" {
			fmt.Fprintf(&b, "- %s: `%s`\n", m.k, strings.ReplaceAll(m.v, "`", "'"))
		}
	}
	if f.Machine != "" || !f.Started.IsZero() || f.Go != "" || f.Command != "" {
		b.WriteString("\n")
	}
	rs := sorted(f.Scenarios)
	if len(rs) == 0 {
		b.WriteString("No results.\n")
		return b.String()
	}
	b.WriteString(tableNote + "\n")
	for start := 0; start < len(rs); {
		end := start
		for end < len(rs) && rs[end].Profile == rs[start].Profile {
			end++
		}
		writeTable(&b, rs[start:end])
		start = end
	}
	return b.String()
}

// writeTable writes the table of one profile's results.
func writeTable(b *strings.Builder, rs []Result) {
	outages, exposure := false, false
	for _, r := range rs {
		outages = outages || r.Outages != nil
		exposure = exposure || r.Exposure != nil
	}
	head := []string{"scenario", "mode", "trials",
		"downtime mean", "downtime p50", "downtime max",
		"detection mean", "detection max", "switch mean", "switch max",
		"lost mean", "lost max"}
	if outages {
		head = append(head, "outages mean", "outages max")
	}
	if exposure {
		head = append(head, "exposure mean", "exposure max")
	}
	head = append(head, "false switches", "vs ars")

	fmt.Fprintf(b, "\n## Profile `%s`\n\n", rs[0].Profile)
	writeRow(b, head)
	align := make([]string, len(head))
	for i := range align {
		align[i] = "--:"
		if i < 2 {
			align[i] = "---"
		}
	}
	writeRow(b, align)

	ars := make(map[string]Result)
	for _, r := range rs {
		if r.Mode == ModeARS && r.Status == "" {
			ars[r.Name] = r
		}
	}
	var failed, notes []string
	for _, r := range rs {
		for _, e := range r.Errors {
			failed = append(failed, fmt.Sprintf("- %s %s: %s", cell(r.Name), r.Mode, cell(e)))
		}
		mode := cell(r.Mode)
		if r.Note != "" {
			notes = append(notes, fmt.Sprintf("%d. %s %s: %s", len(notes)+1, cell(r.Name), r.Mode, cell(r.Note)))
			mode += fmt.Sprintf(" (note %d)", len(notes))
		}
		row := []string{cell(r.Name), mode, trials(r)}
		if r.Status != "" {
			row = append(row, "not run: "+cell(r.Reason))
			for len(row) < len(head) {
				row = append(row, "")
			}
			writeRow(b, row)
			continue
		}
		row = append(row,
			num(r.Downtime.Mean), num(r.Downtime.P50), num(r.Downtime.Max),
			num(r.Detection.Mean), num(r.Detection.Max),
			num(r.Switch.Mean), num(r.Switch.Max),
			num(r.Lost.Mean), num(r.Lost.Max))
		if outages {
			if r.Outages != nil {
				row = append(row, num(r.Outages.Mean), num(r.Outages.Max))
			} else {
				row = append(row, "", "")
			}
		}
		if exposure {
			switch {
			case r.Exposure == nil:
				row = append(row, "", "")
			case r.ExposureTrials < r.Trials:
				row = append(row, fmt.Sprintf("%s (%d of %d)", num(r.Exposure.Mean), r.ExposureTrials, r.Trials), num(r.Exposure.Max))
			default:
				row = append(row, num(r.Exposure.Mean), num(r.Exposure.Max))
			}
		}
		row = append(row, strconv.Itoa(r.FalseSwitches), vsARS(r, ars))
		writeRow(b, row)
	}
	if len(notes) > 0 {
		b.WriteString("\nNotes:\n\n")
		b.WriteString(strings.Join(notes, "\n") + "\n")
	}
	if len(failed) > 0 {
		b.WriteString("\nFailed trials (not counted):\n\n")
		b.WriteString(strings.Join(failed, "\n") + "\n")
	}
	for _, r := range rs {
		if r.Repeated != nil {
			writeRepeated(b, r)
		}
	}
}

// repeatedNote explains the repeated-dos table.
const repeatedNote = `A DoS on the replica the cluster holds active, every %s, %d times a trial; a
replica still down from an earlier attack of the trial is not attacked again.
An attack is **switched** when the service switched away from it before the next
attack was due; **not switched, clean replica running** counts the attacks that
were not although another clean replica was running (target 0). Outages are
per attack, the longest gap the client saw until the next attack (or the end of
the trial); the **vs dos/vm-vm max** ratio divides their max by the downtime
max of dos/vm-vm in the same run (target ≤ %s). The downtime, detection,
switch and lost columns above are per attack too.`

// writeRepeated writes the summary and the attacks of a repeated-dos result.
func writeRepeated(b *strings.Builder, r Result) {
	p := r.Repeated
	fmt.Fprintf(b, "\n### %s, %s\n\n", cell(r.Name), r.Mode)
	fmt.Fprintf(b, repeatedNote+"\n\n", RepeatedEvery, RepeatedCount, num(RepeatedVsDoSTarget))
	writeRow(b, []string{"trials", "attacks (due)", "switched", "not switched, clean replica running",
		"outage mean", "outage max", "vs dos/vm-vm max"})
	writeRow(b, []string{"--:", "--:", "--:", "--:", "--:", "--:", "--:"})
	vs := "– (dos/vm-vm did not run)"
	if p.VsDoSMax != nil {
		vs = num(*p.VsDoSMax)
	}
	writeRow(b, []string{trials(r), fmt.Sprintf("%d (%d)", p.Attacks, p.Due), strconv.Itoa(p.Switched),
		strconv.Itoa(p.NotSwitchedClean), num(p.Outage.Mean), num(p.Outage.Max), vs})
	b.WriteString("\n")
	writeRow(b, []string{"trial", "at (s)", "attacked", "switched to", "after (ms)", "in time", "outage (ms)", "lost", "clean replicas running"})
	writeRow(b, []string{"--:", "--:", "---", "---", "--:", "---", "--:", "--:", "---"})
	for _, a := range p.PerAttack {
		to, after, in := "–", "", "no"
		if a.To != "" {
			to, after = cell(a.To), num(a.AfterMS)
		}
		if a.InTime {
			in = "yes"
		}
		clean := "none"
		if len(a.Clean) > 0 {
			clean = cell(strings.Join(a.Clean, ", "))
		}
		writeRow(b, []string{strconv.Itoa(a.Trial), num(math.Round(a.AtMS/100) / 10), cell(a.Target), to, after, in,
			num(a.OutageMS), strconv.Itoa(a.Lost), clean})
	}
}

func writeRow(b *strings.Builder, cells []string) {
	b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
}

func trials(r Result) string {
	s := strconv.Itoa(r.Trials)
	if n := len(r.Errors); n > 0 {
		s += fmt.Sprintf(" (+%d failed)", n)
	}
	return s
}

// vsARS is the "vs ars" cell of a result that ran.
func vsARS(r Result, ars map[string]Result) string {
	if r.Mode == ModeARS {
		return ""
	}
	a, ok := ars[r.Name]
	if !ok || r.Downtime.Mean == 0 {
		return "–"
	}
	return "ars = " + num(round(a.Downtime.Mean/r.Downtime.Mean*100)) + " % of this"
}

func num(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// cell makes s safe inside a table cell.
func cell(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return strings.ReplaceAll(s, "|", `\|`)
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.RFC3339)
}
