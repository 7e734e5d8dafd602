package exec

import (
	"context"
	"encoding/base64"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
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

// Envelope builds the dead-letter value for a record that failed at stage
// (spec §8.2):
//
//	{"original": <the record's value, or its raw bytes when it could not be decoded>,
//	 "original_encoding": "value" | "text" | "base64",
//	 "key": <key>, "key_encoding": ..., "headers": [{"key", "value", "encoding"}],
//	 "stage": name, "at": "file:line", "error": message,
//	 "source": {"source", "partition", "offset", "line" (line formats), "topic", "kafka_partition" (Kafka)},
//	 "time": RFC 3339}
//
// Every format can write it: raw bytes are text when they are valid UTF-8
// and base64 otherwise, and a NaN or an infinity in the value is written
// as the string "NaN", "+Inf" or "-Inf".
func Envelope(rec *stdlib.Record, stage, at string, err error, now time.Time) map[string]any {
	orig, origEnc := envelopeValue(stdlib.Materialize(rec.Value), rec.Err == nil, rec.Raw)
	key, keyEnc := envelopeValue(rec.Key, true, nil)
	headers := make([]any, len(rec.Headers))
	for i, h := range rec.Headers {
		v, enc := rawText(h.Value)
		headers[i] = map[string]any{"key": h.Key, "value": v, "encoding": enc}
	}
	src := map[string]any{
		"source":    rec.Pos.Source,
		"partition": rec.Pos.Partition,
		"offset":    rec.Pos.Offset,
	}
	if rec.Line > 0 {
		src["line"] = rec.Line
		src["offset"] = rec.Start
	}
	if rec.Topic != "" && rec.Partition >= 0 {
		src["topic"] = rec.Topic
		src["kafka_partition"] = int64(rec.Partition)
	}
	return map[string]any{
		"original":          orig,
		"original_encoding": origEnc,
		"key":               key,
		"key_encoding":      keyEnc,
		"headers":           headers,
		"stage":             stage,
		"at":                at,
		"error":             err.Error(),
		"source":            src,
		"time":              now.UTC().Format(time.RFC3339),
	}
}

// envelopeValue returns v as an envelope holds it, with its encoding
// ("value", "text" or "base64"; nil for nothing). A value that is not
// decoded, is nil or has a type no format encodes gives way to raw; raw
// bytes, []byte values and strings that are not UTF-8 are written as text
// or base64; NaNs and infinities become strings.
func envelopeValue(v any, decoded bool, raw []byte) (any, any) {
	if decoded && v != nil {
		switch x := v.(type) {
		case []byte:
			return rawText(x)
		case string:
			if !utf8.ValidString(x) {
				return rawText([]byte(x))
			}
			return x, "text"
		}
		v, _ = finite(v)
		if _, err := codec.AppendJSON(nil, v); err == nil {
			return v, "value"
		}
		if raw == nil {
			return fmt.Sprint(v), "text"
		}
	}
	if raw == nil {
		return nil, nil
	}
	return rawText(raw)
}

// rawText returns b as text when it is valid UTF-8, else as base64.
func rawText(b []byte) (string, string) {
	if utf8.Valid(b) {
		return string(b), "text"
	}
	return base64.StdEncoding.EncodeToString(b), "base64"
}

// finite returns v with every NaN and infinity in it replaced by the
// string "NaN", "+Inf" or "-Inf", copying the maps and lists it changes;
// it reports whether anything changed.
func finite(v any) (any, bool) {
	switch x := v.(type) {
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return strconv.FormatFloat(x, 'g', -1, 64), true
		}
	case float32:
		if f := float64(x); math.IsNaN(f) || math.IsInf(f, 0) {
			return strconv.FormatFloat(f, 'g', -1, 64), true
		}
	case map[string]any:
		var out map[string]any
		for k, e := range x {
			if f, changed := finite(e); changed {
				if out == nil {
					out = maps.Clone(x)
				}
				out[k] = f
			}
		}
		if out != nil {
			return out, true
		}
	case []any:
		var out []any
		for i, e := range x {
			if f, changed := finite(e); changed {
				if out == nil {
					out = slices.Clone(x)
				}
				out[i] = f
			}
		}
		if out != nil {
			return out, true
		}
	}
	return v, false
}

// failure applies policy pol to one failed record. retry, when not nil,
// attempts the record again (true: it succeeded); it is nil for failures a
// retry cannot fix (malformed input). fail stops the run with a
// [StageError] naming the record's place; skip, dead_letter and fail count
// the record as an error of kind in the metrics of rt's task.
func (r *run) failure(ctx context.Context, s *stageRT, rt *router, kind ErrorKind, pol *plan.ErrorPolicy, rec *stdlib.Record, at string, err error, retry func() (bool, error)) error {
	m := rt.m
	for {
		action := stdlib.ActionFail
		if pol != nil {
			action = pol.Action
		}
		switch action {
		case stdlib.ActionSkip:
			m.errors[kind].Add(1)
			m.skipped.Add(1)
			r.noteError(s, kind, at, rec, err)
			return nil
		case stdlib.ActionDeadLetter:
			m.errors[kind].Add(1)
			r.noteError(s, kind, at, rec, err)
			if rt.dlq == nil {
				return s.failAt(at, fmt.Errorf("no dead-letter sink for: %w", err))
			}
			dl := stdlib.Record{
				Key:   rec.Key,
				Value: Envelope(rec, s.st.Name, at, r.cfg.Redactor.Error(err), r.cfg.Now()),
				Time:  r.cfg.Now(),
				Pos:   rec.Pos,
				Line:  rec.Line,
				Start: rec.Start,
			}
			m.deadLettered.Add(1)
			return rt.emit(ctx, dl, []*dest{rt.dlq})
		case stdlib.ActionRetry:
			if retry != nil {
				for i := 0; i < pol.Max; i++ {
					if err := sleepCtx(ctx, backoff(pol.Backoff, i)); err != nil {
						return err
					}
					m.retries.Add(1)
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
				pol = &plan.ErrorPolicy{Action: stdlib.ActionFail}
			}
			continue
		}
		m.errors[kind].Add(1)
		r.noteError(s, kind, at, rec, err)
		if rec.Err == nil && rec.Pos.Partition != "" { // a decode error names the place itself
			err = fmt.Errorf("record %s: %w", rec.Where(), err)
		}
		return s.failAt(at, err)
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
