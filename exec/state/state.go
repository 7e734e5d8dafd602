package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"pipe.dev/pipe/internal/durable"
	"sort"
	"time"

	"pipe.dev/pipe/stdlib"
)

// fileName is the name of the checkpoint file inside a store's directory.
const fileName = "checkpoint.json"

// tempPrefix starts the names of files being written.
var tempPrefix = durable.TempPrefix(fileName)

// formatVersion is the version of the checkpoint file format.
const formatVersion = 1

// Checkpoint is a completed checkpoint.
type Checkpoint struct {
	ID uint64 `json:"id"`
	// Time is when the checkpoint was saved (set by Save).
	Time time.Time `json:"time,omitzero"`
	// Positions holds, per source partition, the last position covered,
	// sorted by source then partition.
	Positions []stdlib.Position `json:"positions"`
}

// Lookup returns the position held for a source partition.
func (c *Checkpoint) Lookup(source, partition string) (stdlib.Position, bool) {
	if c == nil {
		return stdlib.Position{}, false
	}
	for _, p := range c.Positions {
		if p.Source == source && p.Partition == partition {
			return p, true
		}
	}
	return stdlib.Position{}, false
}

type fileFormat struct {
	Version int `json:"version"`
	Checkpoint
}

// Backend keeps a pipeline's last completed checkpoint: a [Store] (a
// local directory) or another backend (a Kafka topic in a cluster).
// Save must be durable when it returns: the executor counts a checkpoint
// completed only then. Load returns nil when nothing is stored.
type Backend interface {
	Load() (*Checkpoint, error)
	Save(Checkpoint) error
	Close() error
}

// Sort orders positions by source, then partition, as Save stores them.
func Sort(pos []stdlib.Position) {
	sort.Slice(pos, func(i, j int) bool {
		if pos[i].Source != pos[j].Source {
			return pos[i].Source < pos[j].Source
		}
		return pos[i].Partition < pos[j].Partition
	})
}

// Encode returns the stored form of cp (the checkpoint file's content):
// its positions sorted and, when cp.Time is zero, the time now.
func Encode(cp Checkpoint) ([]byte, error) {
	cp.Positions = append([]stdlib.Position(nil), cp.Positions...)
	Sort(cp.Positions)
	if cp.Time.IsZero() {
		cp.Time = time.Now().UTC().Truncate(time.Millisecond)
	}
	data, err := json.MarshalIndent(fileFormat{Version: formatVersion, Checkpoint: cp}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	return append(data, '\n'), nil
}

// Decode reads what Encode wrote; where names the data in errors.
func Decode(data []byte, where string) (*Checkpoint, error) {
	var f fileFormat
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("state: %s is corrupt: %w", where, err)
	}
	if f.Version != formatVersion {
		return nil, fmt.Errorf("state: %s has format version %d, want %d", where, f.Version, formatVersion)
	}
	cp := f.Checkpoint
	return &cp, nil
}

// lockName is the name of the lock file inside a store's directory.
const lockName = "lock"

// Store is a checkpoint store in a local directory. One Store at a time
// has a directory: Open locks it until Close.
type Store struct {
	dir  string
	lock *os.File
}

// ErrLocked is returned by Open when another Store (in this or another
// process) has the directory.
var ErrLocked = errors.New("in use")

// Open returns the store in dir, creating the directory if needed, locking
// it and removing temporary files left by an interrupted Save. It fails
// with an error wrapping [ErrLocked] while another store has the directory.
func Open(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("state: empty directory")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	if err := durable.RemoveTemps(filepath.Join(dir, fileName)); err != nil {
		unlock(lock)
		return nil, fmt.Errorf("state: removing partial file: %w", err)
	}
	return &Store{dir: dir, lock: lock}, nil
}

// Close unlocks the directory.
func (s *Store) Close() error {
	if s == nil || s.lock == nil {
		return nil
	}
	err := unlock(s.lock)
	s.lock = nil
	return err
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// Load returns the last completed checkpoint, or nil if there is none.
func (s *Store) Load() (*Checkpoint, error) {
	path := filepath.Join(s.dir, fileName)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	return Decode(data, path)
}

// Save durably replaces the stored checkpoint with cp.
func (s *Store) Save(cp Checkpoint) error {
	data, err := Encode(cp)
	if err != nil {
		return err
	}
	if err := durable.WriteFile(filepath.Join(s.dir, fileName), data, 0o600); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return nil
}
