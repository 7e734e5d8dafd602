package monitor

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/exec"
	"pipe.dev/pipe/stdlib"
)

// Metric names and labels follow Vector's component metrics, prefixed
// pipe_; spec §9.5 lists each with its Kafka Connect equivalent.
var (
	taskLabels = []string{"pipeline", "stage", "kind", "component", "task"}
	partLabels = []string{"pipeline", "stage", "component", "task", "partition"}

	descReceived      = newDesc("pipe_component_received_events_total", "Records a stage's task received (read, for a source).", taskLabels)
	descReceivedBytes = newDesc("pipe_component_received_bytes_total", "Bytes a source's task read (of records that keep them: files, stdin, Kafka values).", taskLabels)
	descSent          = newDesc("pipe_component_sent_events_total", "Records a stage's task passed on (wrote, for a sink).", taskLabels)
	descSentBytes     = newDesc("pipe_component_sent_bytes_total", "Bytes a sink's task wrote to its target (encoded records: file and stdout lines, Kafka message keys and values).", taskLabels)
	descErrors        = newDesc("pipe_component_errors_total", "Records that failed in a stage's task, by error_type (decode, evaluate, write), and failed checkpoint attempts (checkpoint).", append(taskLabels[:len(taskLabels):len(taskLabels)], "error_type"))
	descDeadLettered  = newDesc("pipe_component_dead_lettered_events_total", "Failed records a stage's task sent to its dead-letter sink.", taskLabels)
	descSkipped       = newDesc("pipe_component_skipped_events_total", "Failed records a stage's task skipped (on_error = skip).", taskLabels)
	descRetries       = newDesc("pipe_component_retries_total", "Retries of a record, a batch or a checkpoint (on_error = retry).", taskLabels)
	descReplays       = newDesc("pipe_component_replayed_events_dropped_total", "Replayed records a sink's task dropped because it already held them.", taskLabels)
	descBatch         = newDesc("pipe_component_batch_duration_seconds", "Time a stage's task spent on one batch, passing it on included.", taskLabels)
	descWrite         = newDesc("pipe_sink_write_duration_seconds", "Duration of a sink's Write of one batch (the flush of a batch).", taskLabels)
	descSinkCP        = newDesc("pipe_sink_checkpoint_duration_seconds", "Duration of a sink making a checkpoint durable (the commit).", taskLabels)
	descSinkCPAge     = newDesc("pipe_sink_checkpoint_age_seconds", "Time since a sink's task last made a checkpoint durable (absent before its first).", taskLabels)
	descBusy          = newDesc("pipe_sink_call_in_flight_seconds", "How long the sink call in flight (a write or a checkpoint) has run; 0 when none.", taskLabels)

	descPosition  = newDesc("pipe_source_partition_position", "Offset of the last record a source's task read from the partition.", partLabels)
	descCommitted = newDesc("pipe_source_partition_committed_position", "Offset of the partition in the last completed checkpoint.", partLabels)
	descLag       = newDesc("pipe_source_partition_lag", "How far the partition's end is ahead of what was read, in unit (records: Kafka, generate; bytes: files).", append(partLabels[:len(partLabels):len(partLabels)], "unit"))

	descCPTotal    = newDesc("pipe_checkpoints_total", "Checkpoints completed by this run.", []string{"pipeline"})
	descCPFailed   = newDesc("pipe_checkpoint_failures_total", "Failed checkpoint attempts (a sink's, or saving the state store).", []string{"pipeline"})
	descCPDuration = newDesc("pipe_checkpoint_duration_seconds", "From a checkpoint's start to every sink having made it durable and the state store having saved it.", []string{"pipeline"})
	descCPID       = newDesc("pipe_checkpoint_last_id", "Id of the last completed checkpoint (0: none).", []string{"pipeline"})
	descCPAge      = newDesc("pipe_checkpoint_age_seconds", "Time since the last checkpoint completed (since the run started, before the first).", []string{"pipeline"})
	descCPInterval = newDesc("pipe_checkpoint_interval_seconds", "The checkpoint interval.", []string{"pipeline"})

	descState   = newDesc("pipe_run_state", "1 for the run's state (starting, running, stopping, finished, failed), 0 for the others.", []string{"pipeline", "state"})
	descPaused  = newDesc("pipe_run_paused", "1 while the sources are paused.", []string{"pipeline"})
	descHealthy = newDesc("pipe_run_healthy", "1 while /health answers 200.", []string{"pipeline"})
	descInfo    = newDesc("pipe_info", "Always 1; the labels name the pipeline and the plan format version.", []string{"pipeline", "plan_version"})
)

func newDesc(name, help string, labels []string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// collector turns a run's snapshot into metrics at each scrape.
type collector struct {
	h *exec.Handle
	p *plan.Plan
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descReceived, descReceivedBytes, descSent, descSentBytes, descErrors, descDeadLettered,
		descSkipped, descRetries, descReplays, descBatch, descWrite, descSinkCP, descSinkCPAge, descBusy, descPosition, descCommitted, descLag,
		descCPTotal, descCPFailed, descCPDuration, descCPID, descCPAge, descCPInterval, descState, descPaused, descHealthy, descInfo} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	snap := c.h.Snapshot(ctx)
	health := c.h.Health()
	pl := c.p.Pipeline
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	counter := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
	}
	hist := func(d *prometheus.Desc, h exec.Histogram, l ...string) {
		ch <- prometheus.MustNewConstHistogram(d, h.Count, h.Sum, h.Cumulative(), l...)
	}
	gauge(descInfo, 1, pl, strconv.Itoa(c.p.Version))
	for _, s := range []exec.RunState{exec.Starting, exec.Running, exec.Stopping, exec.Finished, exec.Failed} {
		gauge(descState, b2f(snap.State == s), pl, string(s))
	}
	gauge(descPaused, b2f(snap.Paused), pl)
	gauge(descHealthy, b2f(health.OK), pl)
	cp := snap.Checkpoints
	counter(descCPTotal, float64(cp.Completed), pl)
	counter(descCPFailed, float64(cp.Failed), pl)
	if cp.Duration.Bounds != nil {
		hist(descCPDuration, cp.Duration, pl)
	}
	gauge(descCPID, float64(snap.Checkpoint), pl)
	gauge(descCPAge, health.CheckpointAge.Seconds(), pl)
	gauge(descCPInterval, time.Duration(c.p.Checkpoint).Seconds(), pl)
	for _, st := range snap.Stages {
		for _, ts := range st.TaskStats {
			l := []string{pl, st.Name, string(st.Kind), st.Component, strconv.Itoa(ts.Task)}
			counter(descReceived, float64(ts.Received), l...)
			if st.Kind == stdlib.SourceKind {
				counter(descReceivedBytes, float64(ts.ReceivedBytes), l...)
			}
			counter(descSent, float64(ts.Sent), l...)
			if st.Kind == stdlib.SinkKind {
				counter(descSentBytes, float64(ts.SentBytes), l...)
			}
			for _, kind := range errorKinds[st.Kind] {
				counter(descErrors, float64(ts.Errors[kind]), append(l, kind)...)
			}
			counter(descDeadLettered, float64(ts.DeadLettered), l...)
			counter(descSkipped, float64(ts.Skipped), l...)
			counter(descRetries, float64(ts.Retries), l...)
			hist(descBatch, ts.Batch, l...)
			if st.Kind == stdlib.SinkKind {
				counter(descReplays, float64(ts.Replays), l...)
				hist(descWrite, *ts.Write, l...)
				hist(descSinkCP, *ts.Checkpoint, l...)
				gauge(descBusy, ts.Busy.Seconds(), l...)
				if !ts.LastCheckpoint.IsZero() {
					gauge(descSinkCPAge, snap.Time.Sub(ts.LastCheckpoint).Seconds(), l...)
				}
			}
		}
		for _, p := range st.Partitions {
			l := []string{pl, st.Name, st.Component, strconv.Itoa(p.Task), p.Partition}
			if p.Offset >= 0 {
				gauge(descPosition, float64(p.Offset), l...)
			}
			if p.Committed >= 0 {
				gauge(descCommitted, float64(p.Committed), l...)
			}
			if p.HasLag {
				gauge(descLag, float64(p.Lag), append(l, p.LagUnit)...)
			}
		}
	}
}

// errorKinds are the error_type values each kind of stage reports.
var errorKinds = map[stdlib.Kind][]string{
	stdlib.SourceKind:    {"decode"},
	stdlib.TransformKind: {"evaluate"},
	stdlib.SinkKind:      {"evaluate", "write", "checkpoint"},
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// newRegistry holds the run's metrics and the process and Go runtime ones.
func newRegistry(h *exec.Handle, p *plan.Plan) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(&collector{h: h, p: p},
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector())
	return reg
}

// Collector returns the metrics of h's run of p, as /metrics serves them:
// a cluster worker serves those of each instance it runs, labelled.
func Collector(h *exec.Handle, p *plan.Plan) prometheus.Collector {
	return &collector{h: h, p: p}
}
