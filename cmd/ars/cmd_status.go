package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/cmd/internal/cli"
)

func init() {
	app.Register(cli.Command{
		Name:    "status",
		Group:   groupCluster,
		Summary: "Show the node's view of the cluster (role, leader, Raft indexes)",
		Setup: func(fs *flag.FlagSet) cli.RunFunc {
			return func(ctx context.Context, e *cli.Env, args []string) error {
				c, err := e.Client()
				if err != nil {
					return err
				}
				st, err := c.Status(ctx)
				if err != nil {
					return err
				}
				return e.Print(st, func(w io.Writer) {
					leader := st.Leader
					if leader == "" {
						leader = "(none)"
					}
					rows := [][2]string{
						{"Node", st.Node},
						{"State", st.State},
						{"Leader", leader},
						{"Leader API", dash(st.LeaderAPI)},
						{"Term", strconv.FormatUint(st.Term, 10)},
						{"Commit index", strconv.FormatUint(st.CommitIndex, 10)},
						{"Applied index", strconv.FormatUint(st.AppliedIndex, 10)},
						{"Last log index", strconv.FormatUint(st.LastLogIndex, 10)},
						{"Last contact", dash(st.LastContact)},
						{"Members", strconv.Itoa(st.Members)},
						{"Voters", strconv.Itoa(st.Voters)},
						{"Version", dash(st.Version)},
					}
					if st.FormatLevel > 0 {
						rows = append(rows, [2]string{"Log format", formatText(st)})
					}
					if st.Disk != nil {
						rows = append(rows, [2]string{"Data directory", diskText(st.Disk)})
					}
					if st.Dev {
						rows = append(rows, [2]string{"Mode", "dev (in-memory, no authentication)"})
					}
					for _, r := range rows {
						fmt.Fprintf(w, "%s:\t%s\n", r[0], r[1])
					}
				})
			}
		},
	})
}

// formatText says which log format level the node and the cluster read,
// and which servers hold entries of this node's level back.
func formatText(st api.Status) string {
	if st.ClusterFormatLevel >= st.FormatLevel || len(st.FormatBehind) == 0 {
		return fmt.Sprintf("level %d (every server reads it)", st.FormatLevel)
	}
	return fmt.Sprintf("level %d; the cluster writes level %d until %s %s upgraded", st.FormatLevel,
		st.ClusterFormatLevel, strings.Join(st.FormatBehind, ", "), map[bool]string{true: "is", false: "are"}[len(st.FormatBehind) == 1])
}

// diskText says what the node's last check of its data directory found.
func diskText(d *api.DiskStatus) string {
	var parts []string
	if d.Healthy {
		parts = append(parts, "healthy")
	} else {
		parts = append(parts, "UNHEALTHY ("+d.Cause+"); this node refuses writes and takes no part in Raft")
	}
	if d.FreeBytes != nil {
		parts = append(parts, fmt.Sprintf("%d bytes free", *d.FreeBytes))
	}
	if d.ProbeSeconds > 0 {
		parts = append(parts, fmt.Sprintf("probe %.1f ms", d.ProbeSeconds*1000))
	}
	return strings.Join(parts, ", ")
}

// dash shows "-" for an empty table cell.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
