package killtest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"pipe.dev/pipe/internal/proctest"
)

// TestKillRotateRename is the crash test of a followed log rotated by
// rename: app.log becomes app.log.1 (app.log.1 app.log.2, and so on) and
// a new app.log is written, while pipe run, following app.log*, is
// SIGKILLed and restarted. Every record must be written exactly once.
func TestKillRotateRename(t *testing.T) {
	rotateTest(t, func(log string, f *os.File) (*os.File, error) {
		if err := shift(log); err != nil {
			return nil, err
		}
		if err := os.Rename(log, log+".1"); err != nil {
			return nil, err
		}
		f.Close()
		return os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	})
}

// TestKillRotateCopytruncate is the same with copytruncate rotation:
// app.log is copied to app.log.1 and truncated in place.
func TestKillRotateCopytruncate(t *testing.T) {
	rotateTest(t, func(log string, f *os.File) (*os.File, error) {
		if err := shift(log); err != nil {
			return nil, err
		}
		b, err := os.ReadFile(log)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(log+".1", b, 0o644); err != nil {
			return nil, err
		}
		return f, f.Truncate(0)
	})
}

// shift renames log.N to log.N+1, from the oldest, as logrotate does.
func shift(log string) error {
	n := 1
	for {
		if _, err := os.Stat(fmt.Sprintf("%s.%d", log, n)); err != nil {
			break
		}
		n++
	}
	for ; n > 1; n-- {
		if err := os.Rename(fmt.Sprintf("%s.%d", log, n-1), fmt.Sprintf("%s.%d", log, n)); err != nil {
			return err
		}
	}
	return nil
}

// rotateTest feeds app.log, rotating it with rotate every third chunk,
// while pipe run is killed and restarted, then compares the output with
// the expected records: in any order across files, each exactly once.
func rotateTest(t *testing.T, rotate func(log string, f *os.File) (*os.File, error)) {
	records, kills := proctest.KillTest(t, 200000, 12)
	dir := t.TempDir()
	input, want := generate(t, records, 11)
	log := writeFile(t, filepath.Join(dir, "logs", "app.log"), nil)
	rotations := 0
	k := fileKill(t, dir, log+"*", kills, want, false)
	k.Produce = func() error {
		return feed(log, lineChunks(input, 4*kills), func(chunk int, f *os.File) (*os.File, error) {
			if chunk%3 != 2 {
				return f, nil
			}
			rotations++
			return rotate(log, f)
		})
	}
	k.Run(t)
	t.Logf("%d input records, %d expected output records, %d rotations", records, len(want), rotations)
}
