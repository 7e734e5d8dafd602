package proctest

import (
	"errors"
	"math/rand/v2"
	"os"
	osexec "os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Kill is one round of a kill test: `pipe run` of a pipeline, SIGKILLed
// at random moments while input arrives, restarted each time on the same
// state directory, then run until the target holds everything, stopped,
// and checked.
type Kill struct {
	Bin   string   // the pipe binary (BuildPipe)
	File  string   // the pipeline file
	State string   // the state directory, kept across runs
	Dir   string   // the runs' working directory
	Env   []string // added to the environment
	// RunEnv, when not nil, adds to the environment of run i (from 0;
	// the last run is number Kills).
	RunEnv func(i int) []string
	Name   string // prefixes the runs' log lines
	Kills  int
	// Life returns how long a run lives before its kill: 1 to 4 s when
	// nil.
	Life func() time.Duration
	// Pause, in about one run of four, stops the run with SIGSTOP for
	// Pause before its kill (a member evicted by its group).
	Pause time.Duration
	// Produce writes the input while the runs are killed; Run waits for
	// it before Complete.
	Produce func() error
	// Progress, when not nil, is logged after each kill.
	Progress func() string
	// During, when not nil, runs while the last run works (a server
	// restart).
	During func(t *testing.T)
	// Complete waits until the target holds every record the input
	// should give, and no more come, failing t after its own timeout.
	Complete func(t *testing.T)
	// Check compares the target with the input.
	Check func(t *testing.T) Tallied
	// Doubles tolerates records written twice (at_least_once).
	Doubles bool
	// Ends says the pipeline ends by itself once its input is all read
	// (a bounded source): a run may then exit cleanly before its kill,
	// and the last run is waited for (a minute at most) instead of
	// stopped; Complete may be nil.
	Ends bool
}

// NewKill returns a round of `pipe run` of the pipeline text, named name,
// run by the pipe binary bin: the text is written to name.pipe in a new
// temporary directory, which is the runs' working directory and holds
// their state directory. The caller sets Kills, the input and the checks.
func NewKill(t testing.TB, bin, name, text string) *Kill {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, name+".pipe")
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return &Kill{Bin: bin, File: file, State: filepath.Join(dir, "state"), Dir: dir, Name: name}
}

// Want returns the set of ids from to to-1, for Tally.
func Want(from, to int64) map[int64]bool {
	want := make(map[int64]bool, to-from)
	for id := from; id < to; id++ {
		want[id] = true
	}
	return want
}

// TallyIDs tallies ids against want (Tally) as Check reports it.
func TallyIDs(want map[int64]bool, ids []int64) Tallied {
	missing, doubled, extra := Tally(want, ids)
	return Tallied{Read: len(ids), Missing: missing, Doubled: doubled, Extra: extra}
}

// Tallied is what Check found: records read from the target, and the
// expected ones missing or there more than once, and those not expected.
type Tallied struct {
	Read, Missing, Doubled, Extra int
}

// Plus returns the tally of two targets checked together.
func (a Tallied) Plus(b Tallied) Tallied {
	return Tallied{Read: a.Read + b.Read, Missing: a.Missing + b.Missing, Doubled: a.Doubled + b.Doubled, Extra: a.Extra + b.Extra}
}

// run is one `pipe run` child; done gets its end.
type run struct {
	cmd  *osexec.Cmd
	done chan error
}

func (k *Kill) start(t *testing.T, i int) *run {
	t.Helper()
	args := []string{"run", "-q", "--state-dir", k.State}
	if lvl := os.Getenv("PIPE_KILLTEST_LOG"); lvl != "" {
		args = append(args, "--log-level", lvl)
	}
	cmd := osexec.Command(k.Bin, append(args, k.File)...)
	cmd.Env = append(os.Environ(), k.Env...)
	if k.RunEnv != nil {
		cmd.Env = append(cmd.Env, k.RunEnv(i)...)
	}
	cmd.Dir = k.Dir
	cmd.Stdout = &LogWriter{T: t, Prefix: k.Name + ": "}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &run{cmd: cmd, done: make(chan error, 1)}
	go func() { r.done <- cmd.Wait() }()
	return r
}

// Run runs the round: Kills runs each SIGKILLed after Life (none may end
// on its own unless Ends: the pipelines never end), then one more until
// Complete, stopped with SIGTERM (it must exit cleanly; with Ends, until
// it ends), and fails t if Check finds
// a record missing, unexpected or (unless Doubles) doubled.
func (k *Kill) Run(t *testing.T) {
	t.Helper()
	life := k.Life
	if life == nil {
		life = func() time.Duration { return time.Duration(1000+rand.IntN(3000)) * time.Millisecond }
	}
	produced := make(chan error, 1)
	go func() {
		if k.Produce == nil {
			produced <- nil
			return
		}
		produced <- k.Produce()
	}()
	for i := range k.Kills {
		r := k.start(t, i)
		select {
		case err := <-r.done:
			if k.Ends && err == nil {
				t.Logf("%s: run %d ended before its kill: the input is done", k.Name, i+1)
				continue
			}
			t.Fatalf("%s: run %d ended on its own: %v", k.Name, i+1, err)
		case <-time.After(life()):
		}
		if k.Pause > 0 && rand.IntN(4) == 0 {
			r.cmd.Process.Signal(syscall.SIGSTOP)
			time.Sleep(k.Pause)
			r.cmd.Process.Signal(syscall.SIGCONT)
			time.Sleep(time.Duration(500+rand.IntN(1500)) * time.Millisecond)
		}
		r.cmd.Process.Signal(syscall.SIGKILL)
		err := <-r.done
		var ee *osexec.ExitError
		if !errors.As(err, &ee) || ee.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("%s: run %d ended before its kill: %v", k.Name, i+1, err)
		}
		if k.Progress != nil {
			t.Logf("%s: kill %d: %s", k.Name, i+1, k.Progress())
		}
	}
	// The last run starts while the input may still arrive: a server
	// restart (During) hits it in the middle of the stream.
	r := k.start(t, k.Kills)
	early := time.After(time.Second) // a SIGTERM before pipe run handles signals would kill it
	if k.During != nil {
		k.During(t)
	}
	if err := <-produced; err != nil {
		t.Fatalf("%s: input: %v", k.Name, err)
	}
	if k.Complete != nil {
		k.Complete(t)
	}
	if k.Ends {
		select {
		case err := <-r.done:
			if err != nil {
				t.Fatalf("%s: the last run: %v", k.Name, err)
			}
		case <-time.After(time.Minute):
			r.cmd.Process.Kill()
			t.Fatalf("%s: the last run did not end in a minute", k.Name)
		}
		k.check(t)
		return
	}
	<-early
	select {
	case err := <-r.done:
		t.Fatalf("%s: the last run ended on its own: %v", k.Name, err)
	default:
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-r.done; err != nil {
		t.Errorf("%s: the last run, stopped: %v", k.Name, err)
	}
	k.check(t)
}

// check runs Check and fails t on a record missing, unexpected or (unless
// Doubles) doubled.
func (k *Kill) check(t *testing.T) {
	t.Helper()
	got := k.Check(t)
	t.Logf("%s: %d kills, %d records read: %d missing, %d doubled, %d unexpected",
		k.Name, k.Kills, got.Read, got.Missing, got.Doubled, got.Extra)
	if got.Missing > 0 || got.Extra > 0 || (got.Doubled > 0 && !k.Doubles) {
		t.Fatalf("%s: %d missing, %d doubled, %d unexpected", k.Name, got.Missing, got.Doubled, got.Extra)
	}
}
