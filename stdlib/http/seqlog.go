package httpconn

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"pipe.dev/pipe/stdlib"
)

// seqLog is the append-only file in the state directory where a source
// that cannot read its input again (an HTTP server, an API's cursor)
// writes, before it hands records on, the last offset of each batch of
// them with what identifies the batch after a restart: the idempotency key
// of a request, the cursor after a poll. Every append is synced.
//
// Whether a batch was made durable is not the log's to say: the positions
// are. After a restart an entry whose offset is at or below the highest
// position stored for the partition (by an exactly-once sink, or the state
// store) was delivered; an entry above it was not (its records were lost
// with the process), and is dropped.
//
// The first line is the header: the partition's identity (random, made
// when the file is created) and the highest offset ever given out, so
// that offsets are never given twice, not even those of lost batches.
type seqLog struct {
	path     string
	f        *os.File
	identity string
	high     int64 // highest offset given out (in the file)
	lines    int   // entries appended since the file was last rewritten
}

// seqEntry is one line of a seqLog.
type seqEntry struct {
	End    int64  `json:"e"`           // last offset of the batch
	Start  int64  `json:"s,omitempty"` // first offset of a poll's records
	Key    string `json:"k,omitempty"` // idempotency key of a request
	Cursor string `json:"c,omitempty"` // cursor after a poll
	Time   int64  `json:"t,omitempty"` // unix seconds
}

type seqHeader struct {
	Identity string `json:"identity"`
	High     int64  `json:"high"`
}

// openSeqLog reads the log at path (a new one when it does not exist) and
// returns it with its entries, in the order they were written. A last line
// cut short by a crash is ignored: its batch was never handed on.
func openSeqLog(path string) (*seqLog, []seqEntry, error) {
	l := &seqLog{path: path}
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return nil, nil, err
	}
	var entries []seqEntry
	if len(b) > 0 {
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, 1<<20)
		first := true
		for sc.Scan() {
			line := sc.Bytes()
			if first {
				var h seqHeader
				if err := json.Unmarshal(line, &h); err != nil || h.Identity == "" {
					return nil, nil, fmt.Errorf("%s: not a position log of pipe (first line: %v)", path, err)
				}
				l.identity, l.high, first = h.Identity, h.High, false
				continue
			}
			var e seqEntry
			if json.Unmarshal(line, &e) != nil {
				break // cut short by a crash: the last line
			}
			entries = append(entries, e)
			l.high = max(l.high, e.End)
		}
	}
	if l.identity == "" {
		var id [8]byte
		rand.Read(id[:])
		l.identity = hex.EncodeToString(id[:])
	}
	return l, entries, nil
}

// heldOffset returns the highest offset stored for partition of identity
// by any holder (the state store, exactly-once sinks): every record at or
// below it is durable downstream. It calls Resume too, as a source must
// before it emits records of a partition.
func heldOffset(resume stdlib.Resumer, partition, identity string) int64 {
	held, ok := resume.Resume(partition, identity)
	if !ok {
		held = 0
	}
	if pl, ok := resume.(stdlib.PositionLister); ok {
		for _, p := range pl.StoredPositions() {
			if p.Partition == partition && stdlib.SameIdentity(p.Identity, identity) {
				held = max(held, p.Offset)
			}
		}
	}
	return held
}

// rewrite replaces the file with the header and entries (write, sync,
// rename, sync the directory) and opens it for appending.
func (l *seqLog) rewrite(entries []seqEntry) error {
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
	for _, e := range entries {
		l.high = max(l.high, e.End)
	}
	var buf bytes.Buffer
	h, _ := json.Marshal(seqHeader{Identity: l.identity, High: l.high})
	buf.Write(h)
	buf.WriteByte('\n')
	for _, e := range entries {
		b, _ := json.Marshal(e)
		buf.Write(b)
		buf.WriteByte('\n')
	}
	if err := os.MkdirAll(filepath.Dir(l.path), 0o755); err != nil {
		return err
	}
	tmp := l.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, l.path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(l.path)); err == nil {
		d.Sync()
		d.Close()
	}
	l.f, err = os.OpenFile(l.path, os.O_APPEND|os.O_WRONLY, 0o644)
	l.lines = 0
	return err
}

// append writes entries and syncs them.
func (l *seqLog) append(entries []seqEntry) error {
	if len(entries) == 0 {
		return nil
	}
	var buf []byte
	for _, e := range entries {
		b, _ := json.Marshal(e)
		buf = append(append(buf, b...), '\n')
		l.high = max(l.high, e.End)
	}
	if _, err := l.f.Write(buf); err != nil {
		return err
	}
	l.lines += len(entries)
	return l.f.Sync()
}

func (l *seqLog) close() error {
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// logPath is the file of a source stage's log in the state directory.
func logPath(cfg stdlib.Config, component string) string {
	dir := cfg.StateDir
	if dir == "" {
		dir = ".pipe-state"
	}
	return filepath.Join(dir, fmt.Sprintf("%s.%s.log", component, cfg.Stage))
}
