package apparmor

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"time"
)

// Follow defaults and bounds.
const (
	DefaultPoll     = 250 * time.Millisecond
	MinPoll         = 10 * time.Millisecond
	MaxPoll         = 10 * time.Second
	DefaultMaxLine  = 64 << 10
	readChunkBytes  = 32 << 10
	maxLinesPerPoll = 1 << 16 // lines delivered before the file is checked again
)

// FollowOptions configure Follow.
type FollowOptions struct {
	// FromStart reads the file from its beginning; by default Follow starts
	// at its end (only lines appended from now on). Files that appear
	// later — the next one after a rotation, or the first one if the path
	// did not exist yet — are always read from their beginning.
	FromStart bool
	// Poll is how often the file is checked for new data, rotation and
	// truncation once everything was read (default DefaultPoll, clamped to
	// MinPoll..MaxPoll).
	Poll time.Duration
	// MaxLine bounds a line (default DefaultMaxLine). A longer line is
	// skipped up to its end, with a warning.
	MaxLine int
	// Logger receives rotation, truncation and skipped-line notices
	// (default: discarded). It never sees line contents.
	Logger *slog.Logger
}

// Follow calls fn with every complete line (without its line break)
// appended to the file at path, like `tail -F`, until ctx ends (it then
// returns ctx.Err()), fn returns an error (returned as is) or the file
// cannot be read (the *fs.PathError, which names the file).
//
//   - Rotation by rename and re-create is noticed when path names another
//     file (device and inode) than the open one: the old file is read to
//     its end first (a last line without a line break is delivered too),
//     then the new one from its beginning.
//   - Truncation (copytruncate) is noticed when the open file becomes
//     shorter than what was read: reading restarts at its beginning. A
//     file truncated and then refilled beyond the old size within one poll
//     interval cannot be told from an appended one; its new lines up to the
//     old size are missed (as with tail -F).
//   - A missing path is waited for (polling); the open file, if any, keeps
//     being read meanwhile.
//
// fn runs on Follow's goroutine: while it blocks, nothing is read.
func Follow(ctx context.Context, path string, opts FollowOptions, fn func(line string) error) error {
	if opts.Poll <= 0 {
		opts.Poll = DefaultPoll
	}
	opts.Poll = min(max(opts.Poll, MinPoll), MaxPoll)
	if opts.MaxLine <= 0 {
		opts.MaxLine = DefaultMaxLine
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	fl := &follower{path: path, opts: opts, fn: fn, log: opts.Logger.With("file", path),
		chunk: make([]byte, readChunkBytes)}
	defer fl.close()

	timer := time.NewTimer(0)
	defer timer.Stop()
	first, waiting := true, false
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if fl.f == nil {
			err := fl.open(first && !opts.FromStart)
			first = false
			switch {
			case errors.Is(err, fs.ErrNotExist):
				if !waiting {
					fl.log.Info("waiting for the log file to appear")
					waiting = true
				}
				if err := sleep(ctx, timer, opts.Poll); err != nil {
					return err
				}
				continue
			case err != nil:
				return err
			}
			if waiting {
				fl.log.Info("log file appeared")
				waiting = false
			}
		}
		more, err := fl.read(ctx)
		if err != nil {
			return err
		}
		if more {
			continue
		}
		switch changed, err := fl.check(ctx); {
		case err != nil:
			return err
		case changed:
			continue
		}
		if err := sleep(ctx, timer, opts.Poll); err != nil {
			return err
		}
	}
}

func sleep(ctx context.Context, t *time.Timer, d time.Duration) error {
	t.Reset(d)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

type follower struct {
	path  string
	opts  FollowOptions
	fn    func(string) error
	log   *slog.Logger
	chunk []byte

	f    *os.File
	fi   os.FileInfo // of f, when opened
	off  int64       // bytes of f consumed
	buf  []byte      // the current incomplete line
	skip bool        // discarding the rest of an overlong line
}

// open opens path; atEnd starts at its end (mid-line: after that line).
func (fl *follower) open(atEnd bool) error {
	f, err := os.Open(fl.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	fl.f, fl.fi, fl.off, fl.buf, fl.skip = f, fi, 0, fl.buf[:0], false
	if atEnd && fi.Size() > 0 {
		// Skip the rest of a line being written right now: it is not new.
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, fi.Size()-1); err == nil && last[0] != '\n' {
			fl.skip = true
		}
		if fl.off, err = f.Seek(fi.Size(), io.SeekStart); err != nil {
			return err
		}
	}
	fl.log.Info("following the log file", "offset", fl.off)
	return nil
}

func (fl *follower) close() {
	if fl.f != nil {
		fl.f.Close()
		fl.f = nil
	}
}

// read delivers complete lines from the open file. It returns more=true
// if it stopped before the end of the file (to check ctx and the file in
// between).
func (fl *follower) read(ctx context.Context) (more bool, err error) {
	for lines := 0; lines < maxLinesPerPoll; {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		n, rerr := fl.f.Read(fl.chunk)
		fl.off += int64(n)
		data := fl.chunk[:n]
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			part := data
			if i >= 0 {
				part = data[:i]
			}
			switch {
			case fl.skip:
			case len(fl.buf)+len(part) > fl.opts.MaxLine:
				fl.log.Warn("skipping an overlong line", "limit_bytes", fl.opts.MaxLine)
				fl.skip, fl.buf = true, fl.buf[:0]
			default:
				fl.buf = append(fl.buf, part...)
			}
			if i < 0 {
				break
			}
			data = data[i+1:]
			if fl.skip {
				fl.skip = false
				continue
			}
			if err := fl.emit(); err != nil {
				return false, err
			}
			lines++
		}
		switch {
		case errors.Is(rerr, io.EOF):
			return false, nil
		case rerr != nil:
			return false, rerr
		}
	}
	return true, nil
}

func (fl *follower) emit() error {
	line := string(bytes.TrimSuffix(fl.buf, []byte{'\r'}))
	fl.buf = fl.buf[:0]
	return fl.fn(line)
}

// check looks for rotation and truncation at the end of the open file. It
// returns changed=true if reading should go on at once.
func (fl *follower) check(ctx context.Context) (changed bool, err error) {
	cur, err := fl.f.Stat()
	if err != nil {
		return false, err
	}
	if cur.Size() < fl.off {
		fl.log.Info("log file truncated; reading it from the start", "size", cur.Size(), "read", fl.off)
		if _, err := fl.f.Seek(0, io.SeekStart); err != nil {
			return false, err
		}
		fl.off, fl.buf, fl.skip = 0, fl.buf[:0], false
		return true, nil
	}
	if cur.Size() > fl.off {
		return true, nil // written since the read hit the end
	}
	now, err := os.Stat(fl.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil // renamed away; keep reading the old file until a new one appears
	case err != nil:
		return false, err
	case os.SameFile(now, fl.fi):
		return false, nil
	}
	// Rotated: finish the old file, then switch.
	for more := true; more; {
		if more, err = fl.read(ctx); err != nil {
			return false, err
		}
	}
	if len(fl.buf) > 0 && !fl.skip {
		if err := fl.emit(); err != nil {
			return false, err
		}
	}
	fl.log.Info("log file rotated; following the new file from its start")
	fl.close()
	return true, nil
}
