package redis

import (
	"net"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"pipe.dev/pipe/internal/proctest"
	"pipe.dev/pipe/internal/testkit"
)

// testServer is a redis-server of the test's own, on a free port, which
// the test stops and starts again with the same command.
type testServer struct {
	t    *testing.T
	addr string
	args []string
	pid  string // its pid file
	tls  bool   // addr is its TLS port (it has no other)
}

// startServer starts redis-server with args added, on a free port (its
// TLS port when tls is set), and stops it when the test ends.
func startServer(t *testing.T, tls bool, args ...string) *testServer {
	t.Helper()
	if _, err := osexec.LookPath("redis-server"); err != nil {
		testkit.Missing(t, "redis-server is not installed")
	}
	port := strconv.Itoa(testkit.FreePort(t))
	dir := t.TempDir()
	s := &testServer{t: t, addr: "127.0.0.1:" + port, pid: filepath.Join(dir, "redis.pid"), tls: tls}
	s.args = []string{"--daemonize", "yes", "--bind", "127.0.0.1", "--save", "", "--dir", dir,
		"--logfile", filepath.Join(dir, "redis.log"), "--pidfile", s.pid}
	if tls {
		s.args = append(s.args, "--port", "0", "--tls-port", port)
	} else {
		s.args = append(s.args, "--port", port)
	}
	s.args = append(s.args, args...)
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *testServer) start() {
	if out, err := osexec.Command("redis-server", s.args...).CombinedOutput(); err != nil {
		s.t.Fatalf("redis-server: %v\n%s", err, out)
	}
	for range 100 {
		if c, err := net.Dial("tcp", s.addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("redis-server on %s did not come up", s.addr)
}

// stop stops the server as an operator would, `redis-cli shutdown
// nosave` (a TLS-only server: SIGTERM to the pid it wrote), and waits
// until it is gone.
func (s *testServer) stop() {
	host, port, _ := net.SplitHostPort(s.addr)
	if s.tls {
		if b, err := os.ReadFile(s.pid); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				syscall.Kill(pid, syscall.SIGTERM)
			}
		}
	} else {
		osexec.Command("redis-cli", "-h", host, "-p", port, "shutdown", "nosave").Run()
	}
	for range 100 {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			return
		}
		c.Close()
		time.Sleep(50 * time.Millisecond)
	}
}

// restartPipeline reads a stream and writes each entry to another stream
// (XADD, exactly once) and to a JSON lines file (exactly once).
const restartPipeline = `pipeline restart_redis {
  delivery   = exactly_once
  checkpoint = 500ms
}

schema Event {
  id:     int
  user:   string
  amount: float
}

source events: redis {
  addr   = "${env:REDIS_ADDR}"
  stream = "${env:PREFIX}:in"
  group  = "pipe"
  schema = Event
}

sink copy: redis {
  addr          = "${env:REDIS_ADDR}"
  command       = xadd
  key           = "${env:PREFIX}:out"
  positions_key = "${env:PREFIX}:positions"
}

sink file: file {
  path = "${env:OUT}"
}

events -> [copy, file]
`

// TestServerRestartRedis runs a stream -> [stream, file] pipeline against
// a Redis server with an append-only file (appendfsync always) while
// entries are added, stops the server (SHUTDOWN NOSAVE) and starts it
// again twice during the run, then checks that the output stream and the
// file hold every entry added exactly once: the source and sink reconnect,
// the source reads its pending entries again and the sink's script either
// ran or did not. The producer gives its entries ids of its own, so that
// an XADD retried across the outage adds nothing twice. Set
// PIPE_KILLTEST=1 to run it.
func TestServerRestartRedis(t *testing.T) {
	n, _ := proctest.KillTest(t, 2000, 0)
	// Every command is in the append-only file before it is answered:
	// stopped and started again, the server holds all it acknowledged.
	srv := startServer(t, false, "--appendonly", "yes", "--appendfsync", "always")
	cl, r := runRestarts(t, srv, n, 2)
	if r.after <= 0 {
		t.Fatal("the producer saw no outage")
	}
	proctest.ExactlyOnce(t, "file", 0, int64(n), proctest.FileIDs(t, r.out))
	proctest.ExactlyOnce(t, "output stream", 0, int64(n), streamIDs(t, cl, r.prefix+":out"))
	if p := pendingCount(t, cl, r.prefix+":in", "pipe"); p != 0 {
		t.Errorf("%d entries still pending", p)
	}
}

// TestServerRestartRedisVolatile is TestServerRestartRedis against a
// server without persistence, started as this machine's is (--save ""
// --appendonly no), restarted once. The restart erases the input stream
// with its group, the output stream and the sink's positions. What is
// left to promise, and checked: every entry added after the restart is
// read and written exactly once (the source creates the group again and
// takes the stream made again as another incarnation), and no entry is
// written twice, before the restart or after it. Set PIPE_KILLTEST=1 to
// run it.
func TestServerRestartRedisVolatile(t *testing.T) {
	n, _ := proctest.KillTest(t, 2000, 0)
	srv := startServer(t, false, "--appendonly", "no")
	cl, r := runRestarts(t, srv, n, 1)
	if r.after <= 0 {
		t.Fatal("the producer saw no outage")
	}
	suffix(t, "file", proctest.FileIDs(t, r.out), r.after, n)
	suffix(t, "output stream", streamIDs(t, cl, r.prefix+":out"), r.after, n)
}

// suffix checks that ids holds no id twice and every id of after..n-1.
func suffix(t *testing.T, what string, ids []int64, after, n int) {
	t.Helper()
	seen := map[int64]int{}
	for _, id := range ids {
		seen[id]++
		if seen[id] == 2 {
			t.Errorf("%s: id %d twice", what, id)
		}
	}
	missing := 0
	for i := after; i < n; i++ {
		if seen[int64(i)] == 0 {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%s: %d of the %d entries added after the restart missing", what, missing, n-after)
	}
	t.Logf("%s: the %d entries added after the restart once each; %d of the %d added before it (the rest erased by the restart)", what, n-after, len(ids)-(n-after), after)
}

// restartRun is what runRestarts leaves to check.
type restartRun struct {
	prefix, out string
	after       int // the first entry added after the last outage
}

// runRestarts adds n entries over 10 s while it runs restartPipeline
// against srv and restarts srv restarts times, then waits until the
// file holds every entry added after the last restart.
func runRestarts(t *testing.T, srv *testServer, n, restarts int) (*goredis.Client, restartRun) {
	cl := clientAt(t, srv.addr)
	root := proctest.ModuleRoot(t)
	bin := proctest.BuildPipe(t)
	dir := t.TempDir()
	r := restartRun{prefix: uniq("restart"), out: filepath.Join(dir, "out.jsonl"), after: -1}
	file := filepath.Join(dir, "restart.pipe")
	os.WriteFile(file, []byte(restartPipeline), 0o644)
	span := 10 * time.Second
	produced := make(chan int, 1)
	base := time.Now().UnixMilli()
	go func() {
		pause := span / time.Duration(n)
		after := -1
		for i := range n {
			failed := false
			for {
				err := cl.XAdd(t.Context(), &goredis.XAddArgs{Stream: r.prefix + ":in", ID: strconv.FormatInt(base+int64(i), 10) + "-1",
					Values: []any{"id", strconv.Itoa(i), "user", "u" + strconv.Itoa(i%50), "amount", "1.5"}}).Err()
				if err == nil || strings.Contains(err.Error(), "equal or smaller") {
					break
				}
				if t.Context().Err() != nil {
					produced <- after
					return
				}
				failed = true
				time.Sleep(50 * time.Millisecond)
			}
			if failed {
				after = i
			}
			time.Sleep(pause)
		}
		produced <- after
	}()
	cmd := osexec.Command(bin, "run", "-q", "--state-dir", filepath.Join(dir, "state"), file)
	cmd.Env = append(os.Environ(), "REDIS_ADDR="+srv.addr, "PREFIX="+r.prefix, "OUT="+r.out)
	cmd.Dir, cmd.Stderr = root, &proctest.LogWriter{T: t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for i := range restarts {
		time.Sleep(3500 * time.Millisecond)
		srv.stop()
		t.Logf("restart %d: server stopped; %d lines in the file", i+1, len(proctest.FileIDs(t, r.out)))
		time.Sleep(time.Second)
		srv.start()
	}
	r.after = <-produced
	if r.after < 0 {
		return cl, r
	}
	proctest.WaitSettled(t, "entries added after the last restart in the file", func() int {
		select {
		case err := <-exited:
			t.Fatalf("pipe run exited: %v", err)
		default:
		}
		c := 0
		for _, id := range proctest.FileIDs(t, r.out) {
			if id >= int64(r.after) {
				c++
			}
		}
		return c
	}, n-r.after, time.Minute)
	cmd.Process.Signal(syscall.SIGTERM)
	<-exited
	return cl, r
}
