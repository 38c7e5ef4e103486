package replicaagent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// stateVersion is the state file's format.
const stateVersion = 1

// fenceRecord is the agent's state file: the highest fence it has seen
// and the action it took under it. It is written before the action, so a
// crash between the two leaves the fence raised and nothing older
// accepted.
type fenceRecord struct {
	Version    int    `json:"version"`
	Replica    string `json:"replica"`
	Term       uint64 `json:"term"`
	Generation uint64 `json:"generation"`
	Action     Action `json:"action"`
}

func (r fenceRecord) fence() Fence { return Fence{Term: r.Term, Generation: r.Generation} }

// seen reports whether any command has been obeyed.
func (r fenceRecord) seen() bool { return r.Action != "" }

// loadFence reads the state file; a missing file is a fresh agent. A file
// that does not parse, or belongs to another replica, is an error: the
// agent does not start rather than forget a fence.
func loadFence(path, replica string) (fenceRecord, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fenceRecord{Version: stateVersion, Replica: replica}, nil
	}
	if err != nil {
		return fenceRecord{}, fmt.Errorf("reading state file: %w", err)
	}
	var r fenceRecord
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return fenceRecord{}, fmt.Errorf("state file %s is not valid (%v); it holds the highest fence seen: "+
			"remove it only when no leader of an older term can still send commands", path, err)
	}
	switch {
	case r.Version != stateVersion:
		return fenceRecord{}, fmt.Errorf("state file %s has format version %d, this agent reads %d", path, r.Version, stateVersion)
	case r.Replica != replica:
		return fenceRecord{}, fmt.Errorf("state file %s belongs to replica %q, not %q", path, r.Replica, replica)
	case r.Action != "" && r.Action != ActionClaim && r.Action != ActionRelease:
		return fenceRecord{}, fmt.Errorf("state file %s names an unknown action %q", path, r.Action)
	}
	return r, nil
}

// saveFence replaces the state file atomically and durably: a temporary
// file in the same directory, synced, renamed over it, the directory
// synced.
func saveFence(path string, r fenceRecord) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".state-*")
	if err != nil {
		return fmt.Errorf("writing state file: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename: nothing to remove
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("writing state file: %w", err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("writing state file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("syncing state file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing state file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("replacing state file: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing state directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing state directory: %w", err)
	}
	return nil
}
