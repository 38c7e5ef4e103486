package cluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ars-project/ars/fsm"
)

// snapshotMagic starts every file `ars snapshot save` writes: one JSON
// header line, then the FSM snapshot bytes.
const snapshotMagic = "ars-snapshot"

type snapshotHeader struct {
	Magic   string `json:"magic"`
	Version int    `json:"version"`
	Node    string `json:"node"`
	Index   uint64 `json:"index"`
	Term    uint64 `json:"term"`
	Size    int64  `json:"size"`
	SHA256  string `json:"sha256"`
	Taken   string `json:"taken"`
}

// MaxSnapshotSize bounds what SnapshotRestore accepts.
const MaxSnapshotSize = 64 << 20

// SnapshotSave asks Raft for a fresh snapshot on the leader and writes it,
// with a checksummed header, to w.
func (c *Cluster) SnapshotSave(ctx context.Context, w io.Writer) error {
	if err := c.diskRefusal(); err != nil {
		return err
	}
	if err := c.requireLeader(); err != nil {
		return err
	}
	f := c.raft.Snapshot()
	if err := f.Error(); err != nil {
		return leaderErr(fmt.Errorf("take snapshot: %w", err))
	}
	meta, rc, err := f.Open()
	if err != nil {
		return fmt.Errorf("open snapshot: %w", err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, MaxSnapshotSize+1))
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	sum := sha256.Sum256(data)
	hdr := snapshotHeader{
		Magic: snapshotMagic, Version: fsm.SnapshotFormat, Node: c.cfg.NodeName,
		Index: meta.Index, Term: meta.Term, Size: int64(len(data)),
		SHA256: hex.EncodeToString(sum[:]), Taken: time.Now().UTC().Format(time.RFC3339),
	}
	hb, _ := json.Marshal(hdr)
	if _, err := w.Write(append(hb, '\n')); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	if _, err := w.Write(data); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	return nil
}

// SnapshotRestore replaces the replicated state with a saved snapshot. The
// file is verified (header, size, checksum, and a trial restore into a
// scratch FSM) before Raft sees it, so a bad file changes nothing.
func (c *Cluster) SnapshotRestore(ctx context.Context, r io.Reader) error {
	if err := c.diskRefusal(); err != nil {
		return err
	}
	if err := c.requireLeader(); err != nil {
		return err
	}
	br := bufio.NewReader(io.LimitReader(r, MaxSnapshotSize+4096))
	line, err := br.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("%w: snapshot has no header line", ErrInvalid)
	}
	var hdr snapshotHeader
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&hdr); err != nil || hdr.Magic != snapshotMagic {
		return fmt.Errorf("%w: not an ars snapshot file", ErrInvalid)
	}
	if hdr.Version != fsm.SnapshotFormat {
		return fmt.Errorf("%w: snapshot format %d, this node reads %d", ErrInvalid, hdr.Version, fsm.SnapshotFormat)
	}
	data, err := io.ReadAll(br)
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	if int64(len(data)) != hdr.Size {
		return fmt.Errorf("%w: snapshot is truncated or padded: %d bytes, header says %d", ErrInvalid, len(data), hdr.Size)
	}
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != hdr.SHA256 {
		return fmt.Errorf("%w: snapshot checksum mismatch", ErrInvalid)
	}
	if err := fsm.New().Restore(data); err != nil {
		return fmt.Errorf("%w: snapshot does not restore: %v", ErrInvalid, err)
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: hdr.Index, Term: hdr.Term, Size: hdr.Size}
	if err := c.raft.Restore(meta, bytes.NewReader(data), timeoutFrom(ctx, 30*time.Second)); err != nil {
		return leaderErr(fmt.Errorf("raft restore: %w", err))
	}
	c.log.Info("restored snapshot", "from_node", hdr.Node, "index", hdr.Index, "taken", hdr.Taken)
	return nil
}
