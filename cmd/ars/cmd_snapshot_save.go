package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/ars-project/ars/cmd/internal/cli"
)

func init() {
	app.Register(cli.Command{
		Name:    "snapshot save",
		Group:   groupOperations,
		Args:    "FILE",
		MinArgs: 1, MaxArgs: 1,
		Timeout: 10 * time.Minute,
		Summary: "Save a snapshot of the replicated state to FILE ('-' = stdout)",
		Help: `The snapshot is taken on the leader, verified against the digest the
server sends, written to a temporary file next to FILE and then renamed,
so FILE is either complete or untouched. An existing FILE is kept unless
-force is given. The default -timeout of this command is 10m.`,
		Setup: func(flags *flag.FlagSet) cli.RunFunc {
			force := flags.Bool("force", false, "overwrite FILE if it exists")
			return func(ctx context.Context, e *cli.Env, args []string) error {
				path := args[0]
				c, err := e.Client()
				if err != nil {
					return err
				}
				if path == "-" {
					return c.SnapshotSave(ctx, e.Stdout)
				}
				if !*force {
					if _, err := os.Lstat(path); err == nil {
						return fmt.Errorf("%s exists (use -force to overwrite)", path)
					}
				}
				n, err := saveAtomically(path, *force, func(w io.Writer) error { return c.SnapshotSave(ctx, w) })
				if err != nil {
					return err
				}
				if e.JSONOutput() {
					return e.JSON(map[string]any{"file": path, "bytes": n})
				}
				_, err = fmt.Fprintf(e.Stdout, "Saved snapshot to %s (%d bytes).\n", path, n)
				return err
			}
		},
	})
}

// countingWriter counts bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// saveAtomically writes through fill into a temporary file in path's
// directory (mode 0600), syncs it and moves it to path. Without overwrite
// an existing path is never replaced (hard link, which fails if path
// exists). On any error the temporary file is removed and path untouched.
func saveAtomically(path string, overwrite bool, fill func(io.Writer) error) (n int64, err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return 0, err
	}
	tmpName := tmp.Name()
	defer func() {
		if tmp != nil {
			tmp.Close()
		}
		os.Remove(tmpName) // after a successful link or rename: a no-op or the extra name
	}()
	cw := &countingWriter{w: tmp}
	if err := fill(cw); err != nil {
		return 0, err
	}
	if err := tmp.Sync(); err != nil {
		return 0, fmt.Errorf("writing %s: %w", path, err)
	}
	err = tmp.Close()
	tmp = nil
	if err != nil {
		return 0, fmt.Errorf("writing %s: %w", path, err)
	}
	if overwrite {
		if err := os.Rename(tmpName, path); err != nil {
			return 0, err
		}
	} else if err := os.Link(tmpName, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return 0, fmt.Errorf("%s exists (use -force to overwrite)", path)
		}
		// No hard links on this file system: check, then rename.
		if _, serr := os.Lstat(path); serr == nil {
			return 0, fmt.Errorf("%s exists (use -force to overwrite)", path)
		}
		if err := os.Rename(tmpName, path); err != nil {
			return 0, err
		}
	}
	if d, err := os.Open(dir); err == nil { // persist the directory entry
		d.Sync()
		d.Close()
	}
	return cw.n, nil
}
