package exec

import (
	"context"
	"fmt"
	"time"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/stdlib"
)

// maxBackoff caps one retry's wait.
const maxBackoff = time.Minute

// StageError is a record or batch failure that stopped the run (policy
// fail, or retries run out with no other fallback).
type StageError struct {
	Stage string
	At    string // file:line of the stage or expression
	Err   error
}

func (e *StageError) Error() string { return fmt.Sprintf("%s: stage %q: %v", e.At, e.Stage, e.Err) }
func (e *StageError) Unwrap() error { return e.Err }

// Envelope builds the dead-letter value for a record that failed at stage:
//
//	{"original": <record value, or its raw text when it has no value>,
//	 "stage": name, "at": "file:line", "error": message,
//	 "source": {"source", "partition", "offset"}, "time": RFC 3339}
func Envelope(rec *stdlib.Record, stage, at string, err error, now time.Time) map[string]any {
	orig := stdlib.Materialize(rec.Value)
	if orig == nil && rec.Raw != nil {
		orig = string(rec.Raw)
	}
	return map[string]any{
		"original": orig,
		"stage":    stage,
		"at":       at,
		"error":    err.Error(),
		"source": map[string]any{
			"source":    rec.Pos.Source,
			"partition": rec.Pos.Partition,
			"offset":    rec.Pos.Offset,
		},
		"time": now.UTC().Format(time.RFC3339),
	}
}

// failure applies policy pol to one failed record. retry, when not nil,
// attempts the record again (true: it succeeded); it is nil for failures a
// retry cannot fix (malformed input). fail stops the run with a
// [StageError]; skip and dead_letter count the record as an error.
func (r *run) failure(ctx context.Context, s *stageRT, rt *router, pol *plan.ErrorPolicy, rec *stdlib.Record, at string, err error, retry func() (bool, error)) error {
	for {
		action := "fail"
		if pol != nil {
			action = pol.Action
		}
		switch action {
		case "skip":
			s.errs.Add(1)
			return nil
		case "dead_letter":
			s.errs.Add(1)
			if rt == nil || rt.dlq == nil {
				return &StageError{Stage: s.st.Name, At: at, Err: fmt.Errorf("no dead-letter sink for: %w", err)}
			}
			dl := stdlib.Record{
				Key:   rec.Key,
				Value: Envelope(rec, s.st.Name, at, r.cfg.Redactor.Error(err), r.cfg.Now()),
				Time:  r.cfg.Now(),
				Pos:   rec.Pos,
			}
			return rt.emit(ctx, dl, []*dest{rt.dlq})
		case "retry":
			if retry != nil {
				for i := 0; i < pol.Max; i++ {
					if err := sleepCtx(ctx, backoff(pol.Backoff, i)); err != nil {
						return err
					}
					ok, rerr := retry()
					if ok {
						return nil
					}
					if rerr != nil {
						err = rerr
					}
				}
				s.log(r, "retries exhausted", at, err)
			}
			pol = pol.Then
			if pol == nil {
				pol = &plan.ErrorPolicy{Action: "fail"}
			}
			continue
		}
		return &StageError{Stage: s.st.Name, At: at, Err: err}
	}
}

// backoff returns the wait before retry i (0-based): base * 2^i, capped.
func backoff(base int64, i int) time.Duration {
	d := time.Duration(base)
	for ; i > 0 && d < maxBackoff; i-- {
		d *= 2
	}
	return min(d, maxBackoff)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return errStopped
	}
}

func (s *stageRT) log(r *run, msg, at string, err error) {
	r.cfg.Logger.Warn(msg, "stage", s.st.Name, "at", at, "error", err.Error())
}
