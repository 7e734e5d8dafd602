package core

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/stdlibtest"
)

// stored stands for the executor's Resumer: the checkpoint store's
// positions (Held), which Resume returns when the identity matches, and
// the positions sinks hold (Listed), which only the listing shows.
type stored = stdlibtest.Resumer

// checkpoint returns what the executor stores after recs were emitted:
// the positions before, raised to each partition's last record, with the
// identity the source gave.
func checkpoint(s *stored, recs []stdlib.Record) *stored {
	last := map[string]stdlib.Position{}
	for _, p := range s.Held {
		last[p.Partition] = p
	}
	for _, r := range recs {
		p := r.Pos
		p.Identity = s.Identity(p.Partition)
		last[p.Partition] = p
	}
	return &stored{Held: slices.SortedFunc(maps.Values(last), func(a, b stdlib.Position) int { return strings.Compare(a.Partition, b.Partition) })}
}

// upTo returns the records of recs up to and including the first whose
// value has field "a" equal to a.
func upTo(recs []stdlib.Record, a int64) []stdlib.Record {
	for i, r := range recs {
		if m, ok := r.Value.(map[string]any); ok && m["a"] == a {
			return recs[:i+1]
		}
	}
	return recs
}

// jsonLines returns one {"a":N} line per n, padded to pad bytes.
func jsonLines(pad int, ns ...int) string {
	var b strings.Builder
	for _, n := range ns {
		line := fmt.Sprintf(`{"a":%d,"p":"`, n)
		line += strings.Repeat("x", max(0, pad-len(line)-3)) + "\"}\n"
		b.WriteString(line)
	}
	return b.String()
}

// as returns the "a" field of each record.
func as(t *testing.T, recs []stdlib.Record) []int64 {
	t.Helper()
	var out []int64
	for _, r := range recs {
		if r.Err != nil {
			t.Fatalf("%v: %v", r.Pos, r.Err)
		}
		out = append(out, r.Value.(map[string]any)["a"].(int64))
	}
	return out
}

// lineNums returns each record's line number.
func lineNums(recs []stdlib.Record) []int64 {
	var out []int64
	for _, r := range recs {
		out = append(out, r.Line)
	}
	return out
}

func seq(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func int64s(ns []int) []int64 {
	out := make([]int64, len(ns))
	for i, n := range ns {
		out[i] = int64(n)
	}
	return out
}

func fileSrc(t *testing.T, attrs map[string]any) *fileSource {
	t.Helper()
	attrs["fingerprint_bytes"] = int64(64)
	s, err := newFileSource(config(FileSourceSpec, "in", attrs))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func appendFile(t *testing.T, path, data string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
}

// TestFileSourceReplaced: a file replaced by another at the same path —
// rewritten in place or renamed over, shorter or longer than the first,
// shorter or longer than fingerprint_bytes — is read from its beginning,
// never from the offset read in the file it replaced.
func TestFileSourceReplaced(t *testing.T) {
	replace := map[string]func(t *testing.T, path, data string){
		"rewritten": func(t *testing.T, path, data string) { writeFile(t, path, data) },
		"renamed over": func(t *testing.T, path, data string) {
			writeFile(t, path+".new", data)
			must(t, os.Rename(path+".new", path))
		},
	}
	for name, repl := range replace {
		for _, pad := range []int{10, 40} { // files shorter and longer than 64 bytes
			for _, second := range [][]int{{7}, seq(10, 15)} {
				t.Run(fmt.Sprintf("%s/pad%d/%d", name, pad, len(second)), func(t *testing.T) {
					p := filepath.Join(t.TempDir(), "in.jsonl")
					writeFile(t, p, jsonLines(pad, 1, 2, 3))
					res := &stored{}
					recs := drain(t, fileSrc(t, map[string]any{"path": p}), res)
					if got := as(t, recs); !slices.Equal(got, []int64{1, 2, 3}) {
						t.Fatalf("first run: %v", got)
					}
					cp := checkpoint(res, recs)
					if got := as(t, drain(t, fileSrc(t, map[string]any{"path": p}), cp)); len(got) != 0 {
						t.Fatalf("a rerun read %v again", got)
					}
					repl(t, p, jsonLines(pad, second...))
					if got := as(t, drain(t, fileSrc(t, map[string]any{"path": p}), cp)); !slices.Equal(got, int64s(second)) {
						t.Fatalf("after the file was replaced: read %v, want %v", got, second)
					}
				})
			}
		}
	}
}

// TestFileSourceRotated: between runs a file is renamed (and grows), then
// rotated by copytruncate; each run reads exactly what is new, whatever
// file holds it, and every record keeps the partition its bytes had and
// the line number it has in its file.
func TestFileSourceRotated(t *testing.T) {
	dir := t.TempDir()
	log, glob := filepath.Join(dir, "app.log"), filepath.Join(dir, "app.log*")
	src := func() *fileSource { return fileSrc(t, map[string]any{"path": glob}) }
	parts := func(recs []stdlib.Record) []string {
		var out []string
		for _, r := range recs {
			if len(out) == 0 || out[len(out)-1] != r.Pos.Partition {
				out = append(out, r.Pos.Partition)
			}
		}
		return out
	}

	writeFile(t, log, jsonLines(12, 1, 2)) // 24 bytes: bound to the inode
	res := &stored{}
	recs := drain(t, src(), res)
	if got := as(t, recs); !slices.Equal(got, []int64{1, 2}) {
		t.Fatalf("run 1: %v", got)
	}
	short := recs[0].Pos.Partition

	// Renamed, then grown past fingerprint_bytes: the rest is read, under a
	// partition known by content that continues the first.
	must(t, os.Rename(log, log+".1"))
	appendFile(t, log+".1", jsonLines(12, seq(3, 8)...))
	cp := checkpoint(res, recs)
	recs = drain(t, src(), cp)
	if got := as(t, recs); !slices.Equal(got, int64s(seq(3, 8))) {
		t.Fatalf("run 2: %v", got)
	}
	if got := parts(recs); !slices.Equal(got, []string{short + "+"}) {
		t.Fatalf("run 2 partitions %q, want %q", got, short+"+")
	}
	if got := lineNums(recs); !slices.Equal(got, int64s(seq(3, 8))) {
		t.Fatalf("run 2 lines %v", got)
	}

	// Copytruncate: app.log.1 grows, is copied to app.log.2 and truncated,
	// then gets new lines. The copy's new lines continue its partition.
	cp = checkpoint(cp, upTo(recs, 5)) // the run stored only up to record 5
	appendFile(t, log+".1", jsonLines(12, 9, 10))
	b, err := os.ReadFile(log + ".1")
	must(t, err)
	writeFile(t, log+".2", string(b))
	writeFile(t, log+".1", jsonLines(12, 11, 12))
	recs = drain(t, src(), cp)
	if got := as(t, recs); !slices.Equal(got, []int64{11, 12, 6, 7, 8, 9, 10}) {
		t.Fatalf("run 3: %v", got)
	}
	if got := parts(recs); len(got) != 2 || got[1] != short+"+" || got[0] == short || got[0] == short+"+" {
		t.Fatalf("run 3 partitions %q", got)
	}
	if got := lineNums(recs); !slices.Equal(got, []int64{1, 2, 6, 7, 8, 9, 10}) {
		t.Fatalf("run 3 lines %v", got)
	}
	if got := as(t, drain(t, src(), checkpoint(cp, recs))); len(got) != 0 {
		t.Fatalf("run 4 read %v again", got)
	}
}

// TestFileSourceContinuesAfter: a partition known by content that
// continues one bound to an inode, held by a sink but not yet in the
// checkpoint store (a crash between the two), is resumed by reading the
// rest of the first under its own name, then the second: each record has
// the partition and offset it had, so the sinks drop exactly what they
// hold. Here the file was also copied meanwhile.
func TestFileSourceContinuesAfter(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeFile(t, log, jsonLines(12, 1, 2))
	res := &stored{}
	run1 := drain(t, fileSrc(t, map[string]any{"path": log}), res)
	appendFile(t, log, jsonLines(12, seq(3, 10)...))
	cp := checkpoint(res, run1)
	run2 := drain(t, fileSrc(t, map[string]any{"path": log}), cp)
	if got := as(t, run2); !slices.Equal(got, int64s(seq(3, 10))) {
		t.Fatalf("run 2: %v", got)
	}
	// The sink holds everything; the checkpoint store only record 1.
	state := checkpoint(res, run1[:1]).Held
	held := checkpoint(cp, run2).Held
	// Copied to a new inode, the original removed.
	b, err := os.ReadFile(log)
	must(t, err)
	must(t, os.Remove(log))
	writeFile(t, log+".1", string(b))
	recs := drain(t, fileSrc(t, map[string]any{"path": filepath.Join(dir, "app.log*")}), &stored{Held: state, Listed: held})
	var want []stdlib.Position
	for _, r := range append(run1[1:], run2...) {
		want = append(want, r.Pos)
	}
	var got []stdlib.Position
	for _, r := range recs {
		got = append(got, r.Pos)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("positions\n%v\nwant\n%v", got, want)
	}
}

// TestFileSourceLegacyPosition: a position stored before identities, named
// by the file's path, still resumes that file.
func TestFileSourceLegacyPosition(t *testing.T) {
	p := filepath.Join(t.TempDir(), "in.jsonl")
	writeFile(t, p, jsonLines(40, 1, 2, 3))
	res := &stored{Held: []stdlib.Position{{Source: "in", Partition: p, Offset: 40}}}
	recs := drain(t, fileSrc(t, map[string]any{"path": p}), res)
	if got := as(t, recs); !slices.Equal(got, []int64{2, 3}) || recs[0].Pos.Partition != p || res.Identity(p) == "" {
		t.Fatalf("read %v as %v, identity %q", got, recs[0].Pos, res.Identity(p))
	}
	// Not at a line's end: the position does not belong to this file.
	res = &stored{Held: []stdlib.Position{{Source: "in", Partition: p, Offset: 41}}}
	if got := as(t, drain(t, fileSrc(t, map[string]any{"path": p}), res)); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Fatalf("read %v", got)
	}
}

// TestFileSourceSameStart: files that start with the same
// fingerprint_bytes are one file to the source, read once, from whichever
// of them, with a warning; tasks agree on it.
func TestFileSourceSameStart(t *testing.T) {
	dir := t.TempDir()
	for i := range 4 {
		body := jsonLines(40, 10*i+1, 10*i+2, 10*i+3)
		writeFile(t, filepath.Join(dir, fmt.Sprintf("f%d.jsonl", i)), body)
		writeFile(t, filepath.Join(dir, fmt.Sprintf("f%d-copy.jsonl", i)), body+jsonLines(40, 10*i+4))
	}
	var got []int64
	for task := range 2 {
		cfg := config(FileSourceSpec, "in", map[string]any{"path": filepath.Join(dir, "*.jsonl"), "fingerprint_bytes": int64(64)})
		cfg.Task, cfg.Tasks = task, 2
		s, err := newFileSource(cfg)
		must(t, err)
		got = append(got, as(t, drain(t, s, &stored{}))...)
	}
	slices.Sort(got)
	want := []int64{1, 2, 3, 4, 11, 12, 13, 14, 21, 22, 23, 24, 31, 32, 33, 34}
	if !slices.Equal(got, want) {
		t.Fatalf("read %v, want %v", got, want)
	}
}

// TestFileSourceFollowRotation: a followed log rotated while it is read,
// alternately by rename and by copytruncate, is read whole, each line once,
// with offsets growing within each partition.
func TestFileSourceFollowRotation(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeFile(t, log, "")
	src := fileSrc(t, map[string]any{"path": filepath.Join(dir, "app.log*"), "follow": true, "poll": 2 * time.Millisecond})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	must(t, src.Open(ctx, &stored{}))
	defer src.Close(ctx)
	const total = 600
	wrote := make(chan error, 1)
	go func() {
		wrote <- func() error {
			f, err := os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			for i := 1; i <= total; i++ {
				if _, err := f.WriteString(jsonLines(40, i)); err != nil {
					return err
				}
				if i%50 != 0 {
					if i%7 == 0 {
						time.Sleep(time.Millisecond)
					}
					continue
				}
				rotated := fmt.Sprintf("%s.%d", log, i)
				if i%100 == 0 { // copytruncate
					b, err := os.ReadFile(log)
					if err != nil {
						return err
					}
					if err := os.WriteFile(rotated, b, 0o644); err != nil {
						return err
					}
					if err := f.Truncate(0); err != nil {
						return err
					}
					continue
				}
				if err := os.Rename(log, rotated); err != nil {
					return err
				}
				f.Close()
				if f, err = os.OpenFile(log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err != nil {
					return err
				}
			}
			return f.Close()
		}()
	}()
	seen := map[int64]int{}
	last := map[string]int64{}
	for len(seen) < total {
		recs, err := src.Read(ctx)
		if err != nil {
			t.Fatalf("after %d lines: %v", len(seen), err)
		}
		for _, a := range as(t, recs) {
			seen[a]++
		}
		for _, r := range recs {
			if r.Pos.Offset <= last[r.Pos.Partition] {
				t.Fatalf("%v after offset %d", r.Pos, last[r.Pos.Partition])
			}
			last[r.Pos.Partition] = r.Pos.Offset
		}
	}
	must(t, <-wrote)
	// Nothing more comes.
	more, stop := context.WithTimeout(ctx, 50*time.Millisecond)
	defer stop()
	if recs, err := src.Read(more); err == nil {
		t.Fatalf("read again: %v", as(t, recs))
	}
	for a, n := range seen {
		if n != 1 || a < 1 || a > total {
			t.Fatalf("line %d read %d times", a, n)
		}
	}
}

// TestFileSourceCSVCopytruncate: a followed CSV file truncated and
// started again with another header row is read by that header, its lines
// counted from 1 again; its copy is not read again.
func TestFileSourceCSVCopytruncate(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.csv")
	pad := strings.Repeat("x", 40)
	writeFile(t, p, "a,b\n1,"+pad+"\n\n2,"+pad+"\n")
	cfg := config(FileSourceSpec, "in", map[string]any{"path": p + "*", "format": stdlib.Ident("csv"), "follow": true, "poll": 2 * time.Millisecond, "fingerprint_bytes": int64(64)})
	cfg.Schema = types.RecordOf(&types.Field{Name: "a", Type: types.IntType}, &types.Field{Name: "b", Type: types.StringType})
	src, err := newFileSource(cfg)
	must(t, err)
	ctx, _ := openFollowed(t, src)
	read := func(n int) []stdlib.Record {
		t.Helper()
		var out []stdlib.Record
		for len(out) < n {
			recs, err := src.Read(ctx)
			if err != nil {
				t.Fatalf("after %d records: %v", len(out), err)
			}
			out = append(out, recs...)
		}
		return out
	}
	recs := read(2)
	if got, lines := as(t, recs), lineNums(recs); !slices.Equal(got, []int64{1, 2}) || !slices.Equal(lines, []int64{2, 4}) {
		t.Fatalf("before: %v at lines %v", got, lines)
	}
	b, err := os.ReadFile(p)
	must(t, err)
	writeFile(t, p+".1", string(b))
	writeFile(t, p, "b,a\nnew,3\n")
	recs = read(1)
	if len(recs) != 1 || recs[0].Line != 2 || recs[0].Start != 4 || !reflect.DeepEqual(recs[0].Value, map[string]any{"a": int64(3), "b": "new"}) {
		t.Fatalf("after truncation: %v at line %d (byte %d)", values(recs), recs[0].Line, recs[0].Start)
	}
	more, stop := context.WithTimeout(ctx, 50*time.Millisecond)
	defer stop()
	if recs, err := src.Read(more); err == nil {
		t.Fatalf("read again: %v", values(recs))
	}
}

// TestFileIDText: an identity's text form parses back to it, and text of
// another form is no identity (so it matches no file).
func TestFileIDText(t *testing.T) {
	for _, id := range []fileID{
		{sum: "0123456789abcdef", n: 1024},
		{sum: "0123456789abcdef", n: 12, bound: true, key: fileKey{dev: 64769, ino: 1 << 40}},
		{sum: "fedcba9876543210", n: 1024, from: 77},
	} {
		got, ok := parseFileID(id.String())
		if !ok || got != id {
			t.Errorf("%s parsed as %+v, %v", id, got, ok)
		}
	}
	for _, s := range []string{"", "cluster-A", "sha256:0123/12", "sha256:0123456789abcdef/0", "sha256:0123456789abcdeg/12",
		"sha256:0123456789abcdef/12@1", "sha256:0123456789abcdef/12+0", "sha256:0123456789abcdef/x"} {
		if id, ok := parseFileID(s); ok {
			t.Errorf("%q parsed as %+v", s, id)
		}
	}
}
