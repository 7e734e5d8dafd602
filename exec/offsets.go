package exec

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/exec/state"
	"pipe.dev/pipe/stdlib"
)

// StateHolder is the holder name of the state store's positions.
const StateHolder = "state store"

// HeldPosition is a position one holder keeps for a source partition: the
// state store, or an exactly-once sink that keeps positions in its target.
type HeldPosition struct {
	// Holder is StateHolder or a sink stage's name; Component is the
	// sink's component ("" for the state store).
	Holder    string
	Component string
	// OfSource says the source's input keeps the position (a replication
	// slot): shown, never changed by Reset or Set.
	OfSource bool
	// Instance names the instance whose state store holds the position,
	// for a pipeline run as several ([OpenInstanceOffsets]); "" else.
	Instance string
	stdlib.Position
	// Time is when the position was stored, where the holder knows it.
	Time time.Time
}

// Offsets shows and changes the positions a pipeline's state store and
// exactly-once sinks hold: the job of Kafka Connect's offsets API. With
// the local store it locks the state directory, so it fails while the
// pipeline runs there, and a run cannot start while it is open.
type Offsets struct {
	p      *plan.Plan
	stores []heldStore
	sinks  []offsetSink
	cfg    Config // with defaults: builds a source as change needs it
}

// heldStore is one state store of an [Offsets]: the pipeline's, or one
// instance's.
type heldStore struct {
	instance string
	b        state.Backend
}

// InstanceState is the state store of one instance of a pipeline run as
// several (a cluster's `instances = N`).
type InstanceState struct {
	// Instance names it where its positions are shown ("NAME/1").
	Instance string
	Open     func() (state.Backend, error)
}

type offsetSink struct {
	st    *plan.Stage
	store stdlib.PositionStore
}

// OpenOffsets opens the state store of p (cfg.StateDir as for Run) and
// builds every sink of p that keeps positions (a [stdlib.PositionStore])
// with its secrets resolved, without opening it.
func OpenOffsets(p *plan.Plan, cfg *Config) (*Offsets, error) {
	return OpenInstanceOffsets(p, cfg, nil)
}

// OpenInstanceOffsets is [OpenOffsets] for a pipeline run as several
// instances, each with a state store of its own (instead of
// cfg.OpenState or cfg.StateDir's; none: as OpenOffsets). The sinks and
// sources are shared: Positions lists what every instance's store holds,
// each position marked with its instance, beside the sinks' once; Reset
// and Set change every store. The stores are opened in order; one that
// fails closes those opened before.
func OpenInstanceOffsets(p *plan.Plan, cfg *Config, stores []InstanceState) (o *Offsets, err error) {
	c := cfg.withDefaults(p)
	defer func() { err = c.Redactor.Error(err) }()
	// The graph only: the parameters' types, not their values.
	if _, err := buildGraph(p, c.Registry, c.ChannelDepth, c.Now, runParams{typ: paramsRecord(p.Params)}); err != nil {
		return nil, err
	}
	o = &Offsets{p: p, cfg: c}
	if len(stores) == 0 {
		b, err := c.openState()
		if err != nil {
			return nil, err
		}
		o.stores = []heldStore{{b: b}}
	}
	for _, st := range stores {
		b, err := st.Open()
		if err != nil {
			o.Close()
			return nil, fmt.Errorf("instance %s: %w", st.Instance, err)
		}
		o.stores = append(o.stores, heldStore{st.Instance, b})
	}
	for _, st := range p.Stages {
		if st.Kind != stdlib.SinkKind {
			continue
		}
		spec := c.Registry.Lookup(stdlib.SinkKind, st.Component)
		if spec == nil || spec.NewSink == nil {
			continue
		}
		attrs, err := configAttrs(st, spec, c.Secrets)
		if err != nil {
			o.Close()
			return nil, err
		}
		snk, err := spec.NewSink(stdlib.Config{
			Pipeline: p.Pipeline, Stage: st.Name, Attrs: attrs, Schema: st.Schema, Input: st.Input,
			Delivery: stdlib.Delivery(st.Delivery), Task: 0, Tasks: st.Tasks, StateDir: c.StateDir,
			Logger: c.Logger.With("stage", st.Name),
		})
		if err != nil {
			o.Close()
			return nil, fmt.Errorf("stage %q: %w", st.Name, err)
		}
		if ps, ok := snk.(stdlib.PositionStore); ok {
			o.sinks = append(o.sinks, offsetSink{st, ps})
		}
	}
	return o, nil
}

// sourceStore builds source stage name (task 0), without opening it, and
// returns it when it keeps positions of its own (a
// [stdlib.SourcePositionStore]); the caller closes it.
func (o *Offsets) sourceStore(name string) (stdlib.Source, stdlib.SourcePositionStore, error) {
	for _, st := range o.p.Stages {
		if st.Kind != stdlib.SourceKind || st.Name != name {
			continue
		}
		src, err := o.buildSource(st)
		if src == nil || err != nil {
			return nil, nil, err
		}
		ps, _ := src.(stdlib.SourcePositionStore)
		return src, ps, nil
	}
	return nil, nil, nil
}

// buildSource builds source stage st (task 0) without opening it; nil when
// its component has no constructor.
func (o *Offsets) buildSource(st *plan.Stage) (stdlib.Source, error) {
	c := &o.cfg
	spec := c.Registry.Lookup(stdlib.SourceKind, st.Component)
	if spec == nil || spec.NewSource == nil {
		return nil, nil
	}
	attrs, err := configAttrs(st, spec, c.Secrets)
	if err != nil {
		return nil, err
	}
	src, err := spec.NewSource(stdlib.Config{
		Pipeline: o.p.Pipeline, Stage: st.Name, Attrs: attrs, Schema: st.Schema,
		Delivery: stdlib.Delivery(st.Delivery), Task: 0, Tasks: st.Tasks, StateDir: c.StateDir,
		Logger: c.Logger.With("stage", st.Name),
	})
	if err != nil {
		return nil, fmt.Errorf("stage %q: %w", st.Name, err)
	}
	return src, nil
}

// sourcePositions returns the positions the inputs of sources keep
// themselves ([stdlib.SourcePositionReporter]).
func (o *Offsets) sourcePositions(ctx context.Context) ([]HeldPosition, error) {
	var out []HeldPosition
	for _, st := range o.p.Stages {
		if st.Kind != stdlib.SourceKind {
			continue
		}
		src, err := o.buildSource(st)
		if src == nil || err != nil {
			return nil, err
		}
		r, ok := src.(stdlib.SourcePositionReporter)
		if !ok {
			src.Close(ctx)
			continue
		}
		holder, ps, err := r.ReportPositions(ctx)
		src.Close(ctx)
		if err != nil {
			return nil, fmt.Errorf("source %q: reading its positions: %w", st.Name, err)
		}
		for _, p := range ps {
			out = append(out, HeldPosition{Holder: holder, Component: st.Component, Position: p, OfSource: true})
		}
	}
	return out, nil
}

// Close closes the state stores (unlocking a local one).
func (o *Offsets) Close() error {
	var errs []error
	for _, s := range o.stores {
		errs = append(errs, s.b.Close())
	}
	return errors.Join(errs...)
}

// Positions returns every held position, sorted by source, partition and
// holder (the state stores first, by instance).
func (o *Offsets) Positions(ctx context.Context) ([]HeldPosition, error) {
	var out []HeldPosition
	for _, s := range o.stores {
		cp, err := s.b.Load()
		if err != nil {
			return nil, s.wrap(err)
		}
		if cp != nil {
			for _, p := range cp.Positions {
				out = append(out, HeldPosition{Holder: StateHolder, Instance: s.instance, Position: p, Time: cp.Time})
			}
		}
	}
	for _, s := range o.sinks {
		ps, err := s.store.StoredPositions(ctx)
		if err != nil {
			return nil, fmt.Errorf("sink %q: reading its positions: %w", s.st.Name, err)
		}
		for _, p := range ps {
			out = append(out, HeldPosition{Holder: s.st.Name, Component: s.st.Component, Position: p})
		}
	}
	kept, err := o.sourcePositions(ctx)
	if err != nil {
		return nil, err
	}
	out = append(out, kept...)
	sortHeld(out)
	return out, nil
}

func holderRank(h string) int {
	if h == StateHolder {
		return 0
	}
	return 1
}

// instanceCompare orders instance names ("NAME/I") by their index.
func instanceCompare(a, b string) int {
	ia, ea := instanceIndex(a)
	ib, eb := instanceIndex(b)
	if ea != nil || eb != nil {
		return strings.Compare(a, b)
	}
	return cmp.Compare(ia, ib)
}

func instanceIndex(s string) (int, error) {
	return strconv.Atoi(s[strings.LastIndexByte(s, '/')+1:])
}

// Reset forgets the positions of source (only of partitions, when given)
// in the state store and every sink, so that the next run reads them as
// the source's start attribute says and no sink drops them as replays.
func (o *Offsets) Reset(ctx context.Context, source string, partitions []string) error {
	return o.change(ctx, source, partitions, nil)
}

// Set makes the next run read partition of source from offset next: every
// holder keeps next-1 as the last position done, with the identity the
// partition has where one holder knows it.
func (o *Offsets) Set(ctx context.Context, source, partition string, next int64) error {
	held, err := o.Positions(ctx)
	if err != nil {
		return err
	}
	p := stdlib.Position{Source: source, Partition: partition, Offset: next - 1}
	for _, h := range held {
		if h.Source == source && h.Partition == partition && h.Identity != "" {
			p.Identity = h.Identity
			break
		}
	}
	return o.change(ctx, source, []string{partition}, []stdlib.Position{p})
}

// change replaces what every holder keeps for the partitions of source.
func (o *Offsets) change(ctx context.Context, source string, partitions []string, set []stdlib.Position) error {
	if !o.hasSource(source) {
		return fmt.Errorf("the pipeline has no source %q", source)
	}
	src, ps, err := o.sourceStore(source)
	if err != nil {
		return err
	}
	if src != nil {
		defer src.Close(ctx)
	}
	if ps != nil {
		if err := ps.SetPositions(ctx, partitions, set); err != nil {
			return fmt.Errorf("source %q: changing its positions: %w", source, err)
		}
	}
	for _, s := range o.sinks {
		if err := s.store.SetPositions(ctx, source, partitions, set); err != nil {
			return fmt.Errorf("sink %q: changing its positions: %w", s.st.Name, err)
		}
	}
	for _, s := range o.stores {
		if err := s.change(source, partitions, set); err != nil {
			return s.wrap(err)
		}
	}
	return nil
}

// change replaces what the store keeps for the partitions of source.
func (s heldStore) change(source string, partitions []string, set []stdlib.Position) error {
	cp, err := s.b.Load()
	if err != nil {
		return err
	}
	if cp == nil {
		if len(set) == 0 {
			return nil
		}
		cp = &state.Checkpoint{}
	}
	kept := cp.Positions[:0:0]
	for _, p := range cp.Positions {
		if p.Source == source && (len(partitions) == 0 || slices.Contains(partitions, p.Partition)) {
			continue
		}
		kept = append(kept, p)
	}
	cp.Positions = append(kept, set...)
	cp.Time = time.Time{}
	return s.b.Save(*cp)
}

// wrap names the store's instance in err, if it has one.
func (s heldStore) wrap(err error) error {
	if s.instance == "" {
		return err
	}
	return fmt.Errorf("instance %s: %w", s.instance, err)
}

func (o *Offsets) hasSource(name string) bool {
	for _, st := range o.p.Stages {
		if st.Kind == stdlib.SourceKind && st.Name == name {
			return true
		}
	}
	return false
}

// ErrStateLocked is wrapped by OpenOffsets' error while a run (or another
// Offsets) has the state directory.
var ErrStateLocked = state.ErrLocked

// OffsetsReport is the JSON form of held positions: `pipe offsets show
// --format json` and a running pipeline's /offsets (version 1: fields may
// be added, never renamed).
type OffsetsReport struct {
	Version   int              `json:"version"`
	Pipeline  string           `json:"pipeline"`
	Positions []ReportPosition `json:"positions"`
}

// ReportPosition is one position of an [OffsetsReport]; Next is the offset
// a resumed run reads first. Instance names the instance whose state store
// holds it, for a pipeline run as several: each instance's store is a
// holder of its own.
type ReportPosition struct {
	Source    string     `json:"source"`
	Partition string     `json:"partition"`
	Holder    string     `json:"holder"`
	Instance  string     `json:"instance,omitempty"`
	Component string     `json:"component,omitempty"`
	OfSource  bool       `json:"of_source,omitempty"`
	Offset    int64      `json:"offset"`
	Next      int64      `json:"next"`
	Identity  string     `json:"identity,omitempty"`
	Time      *time.Time `json:"time,omitempty"`
}

// NewOffsetsReport builds the report of held positions of pipeline.
func NewOffsetsReport(pipeline string, held []HeldPosition) OffsetsReport {
	out := OffsetsReport{Version: 1, Pipeline: pipeline, Positions: []ReportPosition{}}
	for _, h := range held {
		j := ReportPosition{Source: h.Source, Partition: h.Partition, Holder: h.Holder, Instance: h.Instance, Component: h.Component, OfSource: h.OfSource,
			Offset: h.Offset, Next: h.Offset + 1, Identity: h.Identity}
		if !h.Time.IsZero() {
			t := h.Time.UTC()
			j.Time = &t
		}
		out.Positions = append(out.Positions, j)
	}
	return out
}

// Held returns the report's positions as [NewOffsetsReport] took them.
func (r OffsetsReport) Held() []HeldPosition {
	out := make([]HeldPosition, 0, len(r.Positions))
	for _, p := range r.Positions {
		h := HeldPosition{Holder: p.Holder, Instance: p.Instance, Component: p.Component, OfSource: p.OfSource,
			Position: stdlib.Position{Source: p.Source, Partition: p.Partition, Offset: p.Offset, Identity: p.Identity}}
		if p.Time != nil {
			h.Time = *p.Time
		}
		out = append(out, h)
	}
	return out
}
