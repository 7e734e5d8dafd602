package exec

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/exec/state"
	"pipe.dev/pipe/stdlib"
)

// Config configures a run. Its zero value works.
type Config struct {
	// Registry holds the components; nil means stdlib.Default.
	Registry *stdlib.Registry
	// StateDir is the state store's directory; "" means
	// .pipe-state/<pipeline> under the working directory.
	StateDir string
	// OpenState, if set, opens the state store instead of the directory
	// StateDir (which the components still get for local state of their
	// own): a cluster keeps each instance's checkpoints in a Kafka topic.
	// The store is closed when the run (or the [Offsets]) ends.
	OpenState func() (state.Backend, error)
	// Instance is the index of this run among its pipeline's instances
	// (a cluster's `instances = N`; 0 for `pipe run`) and Owner names where
	// it runs (a cluster worker's id): components get both
	// ([stdlib.Config]), and exactly_once sinks fence by them.
	Instance int
	Owner    string
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock (dead-letter envelope times); nil means time.Now.
	Now func() time.Time
	// Status, if set, receives a snapshot of per-stage counters every
	// StatusInterval (default 1s) and once at the end of the run.
	Status         func(Snapshot)
	StatusInterval time.Duration
	// Secrets resolves ${provider:ref} attributes when the run starts; nil
	// means EnvFileSecrets.
	Secrets Secrets
	// Redactor receives every value Secrets resolves; nil means a new one.
	// Run redacts with it its error, the dead-letter envelopes' error text
	// and whatever goes to Logger. Pass one to redact output of your own.
	Redactor *Redactor
	// BatchSize is the most records a batch carries between stages
	// (default 1024).
	BatchSize int
	// ChannelDepth is the number of batches a task's input buffers
	// (default 8), split over its senders' channels (at least 2 each).
	ChannelDepth int
	// Handle, if set, gives other goroutines the run's state, counters,
	// positions and health, and control over it, while it lasts.
	Handle *Handle
	// MemoryLimit, when positive, tunes the Go garbage collector for the
	// run (process-wide, restored when Run returns): GOGC 400 under a soft
	// memory limit that keeps the process's resident memory within this
	// many bytes (the Go runtime's limit is this less what the executable
	// and libraries mapped from their files hold resident, on Linux).
	// Collection then costs about 40% less CPU on record-heavy pipelines.
	// It is ignored when the GOGC or GOMEMLIMIT environment variable is set.
	MemoryLimit int64
}

// Snapshot is the state of a run at one moment.
type Snapshot struct {
	Time    time.Time     `json:"time"`
	Elapsed time.Duration `json:"elapsed_ns"`
	// State is set in a [Handle]'s snapshots; Paused says the sources
	// are paused.
	State  RunState `json:"state,omitempty"`
	Paused bool     `json:"paused"`
	// Checkpoint is the id of the last completed checkpoint (0: none yet);
	// CheckpointTime when this run completed it (zero: none yet) and
	// CheckpointAge how long ago.
	Checkpoint     uint64          `json:"checkpoint"`
	CheckpointTime time.Time       `json:"checkpoint_time,omitzero"`
	CheckpointAge  time.Duration   `json:"checkpoint_age_ns,omitempty"`
	Checkpoints    CheckpointStats `json:"checkpoints"`
	Stages         []StageStatus   `json:"stages"`
}

// CheckpointStats counts the checkpoints of a run.
type CheckpointStats struct {
	Completed uint64        `json:"completed"`
	Failed    uint64        `json:"failed"` // failed attempts: a sink's, or saving the state store
	Duration  Histogram     `json:"duration_seconds"`
	Interval  time.Duration `json:"interval_ns"`
}

// StageStatus holds one stage's counters.
type StageStatus struct {
	Name      string      `json:"name"`
	Kind      stdlib.Kind `json:"kind"`
	Component string      `json:"component"`
	Tasks     int         `json:"tasks"`
	In        int64       `json:"received"` // records received (read, for a source)
	Out       int64       `json:"sent"`     // records emitted (written, for a sink)
	// Errors counts records that failed (skipped, dead-lettered, or
	// failing the run) and failed checkpoint attempts.
	Errors       int64   `json:"errors"`
	DeadLettered int64   `json:"dead_lettered"`
	Skipped      int64   `json:"skipped"`
	Retries      int64   `json:"retries"`
	Rate         float64 `json:"rate"` // records out per second over the last second; in a run's last Status snapshot, since the start
	// CheckpointAge is, for a sink, the time since its task that is most
	// behind last made a checkpoint durable; for other stages, the time
	// since the last checkpoint completed. 0: none yet.
	CheckpointAge time.Duration `json:"checkpoint_age_ns,omitempty"`
	// LastError is the stage's last error, if any.
	LastError  *ErrorStatus      `json:"last_error,omitempty"`
	Partitions []PartitionStatus `json:"partitions,omitempty"` // sources
	TaskStats  []TaskStatus      `json:"task_stats"`
}

// PartitionStatus is one partition a source task read.
type PartitionStatus struct {
	Partition string `json:"partition"`
	Task      int    `json:"task"`
	Offset    int64  `json:"offset"`    // of the last record emitted; -1: none yet
	Committed int64  `json:"committed"` // in the last completed checkpoint; -1: none
	// Lag is how far the partition's end is ahead of what was read, in
	// LagUnit, when the source reports it (HasLag).
	Lag     int64  `json:"lag"`
	LagUnit string `json:"lag_unit,omitempty"`
	HasLag  bool   `json:"has_lag"`
}

func (c *Config) withDefaults(p *plan.Plan) Config {
	out := Config{}
	if c != nil {
		out = *c
	}
	if out.Registry == nil {
		out.Registry = stdlib.Default
	}
	if out.StateDir == "" {
		out.StateDir = filepath.Join(".pipe-state", p.Pipeline)
	}
	if out.Logger == nil {
		out.Logger = slog.New(slog.DiscardHandler)
	}
	if out.Now == nil {
		out.Now = time.Now
	}
	if out.StatusInterval <= 0 {
		out.StatusInterval = time.Second
	}
	if out.Secrets == nil {
		out.Secrets = EnvFileSecrets{}
	}
	if out.Redactor == nil {
		out.Redactor = &Redactor{}
	}
	out.Secrets = redactingSecrets{out.Secrets, out.Redactor}
	out.Logger = slog.New(out.Redactor.Handler(out.Logger.Handler()))
	if out.BatchSize <= 0 {
		out.BatchSize = 1024
	}
	if out.ChannelDepth <= 0 {
		out.ChannelDepth = 8
	}
	return out
}

// openState opens the run's state store.
func (c *Config) openState() (state.Backend, error) {
	if c.OpenState != nil {
		return c.OpenState()
	}
	return state.Open(c.StateDir)
}

// Load reads a compiled plan.json.
func Load(path string) (*plan.Plan, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p, err := plan.Unmarshal(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}
