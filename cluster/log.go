package cluster

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// logWriter turns the line-oriented output of hashicorp libraries
// ("[WARN]  raft: ...", "[DEBUG] memberlist: ...") into slog records, so a
// node has one log stream with one format.
type logWriter struct {
	log       *slog.Logger
	component string
}

var levelTags = []struct {
	tag   string
	level slog.Level
}{
	{"[ERROR]", slog.LevelError},
	{"[ERR]", slog.LevelError},
	{"[WARN]", slog.LevelWarn},
	{"[INFO]", slog.LevelInfo},
	{"[DEBUG]", slog.LevelDebug},
	{"[TRACE]", slog.LevelDebug - 4},
}

func (w logWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		msg := string(line)
		level := slog.LevelInfo
		for _, lt := range levelTags {
			if i := strings.Index(msg, lt.tag); i >= 0 {
				level = lt.level
				msg = strings.TrimSpace(msg[i+len(lt.tag):])
				break
			}
		}
		msg = strings.TrimPrefix(msg, w.component+": ")
		w.log.Log(context.Background(), level, msg, "component", w.component)
	}
	return len(p), nil
}

func hcLogger(l *slog.Logger, name string) hclog.Logger {
	level := hclog.Info
	if l.Enabled(context.Background(), slog.LevelDebug) {
		level = hclog.Debug
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:        name,
		Level:       level,
		Output:      logWriter{log: l, component: name},
		DisableTime: true,
	})
}

func stdLogger(l *slog.Logger, name string) *log.Logger {
	return log.New(logWriter{log: l, component: name}, "", 0)
}

var _ io.Writer = logWriter{}
