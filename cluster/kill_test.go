package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"pipe.dev/pipe/internal/proctest"
)

// killPipelines are the kill test's pipelines: Kafka → PostgreSQL exactly once, Kafka → Kafka exactly once
// in two instances, PostgreSQL → Kafka and generate → Kafka. SCHEMA stands
// for the PostgreSQL schema of the test.
var killPipelines = map[string]string{
	"killk2pg": killHead("killk2pg", "") + killKafkaIn("killk2pg") + `
sink out: postgres {
  dsn           = "${env:CLUSTER_PG}"
  table         = "SCHEMA.k2pg"
  offsets_table = "SCHEMA.offsets"
  create_table  = true
}

in -> out
`,
	"killk2k": killHead("killk2k", "  instances  = 2\n") + killKafkaIn("killk2k") + killKafkaOut("killout", "in"),
	"killpg2k": killHead("killpg2k", "") + `
source in: postgres {
  dsn                 = "${env:CLUSTER_PG}"
  table               = "SCHEMA.src"
  mode                = incrementing
  incrementing_column = "id"
  poll                = 100ms
  schema              = Event
}
` + killKafkaOut("killpgout", "in"),
	"killgen": killHead("killgen", "") + `
source events: generate {
  rate = 50
  fields {
    id = seq(start = 1)
  }
}
` + killKafkaOut("killgen", "events"),
}

// killHead is the pipeline block of a kill test pipeline and its schema.
func killHead(name, extra string) string {
	return "pipeline " + name + " {\n  delivery   = exactly_once\n  checkpoint = 300ms\n" + extra + "}\n\nschema Event {\n  id: int\n}\n"
}

// killKafkaIn is a kill test pipeline's Kafka source, in group.
func killKafkaIn(group string) string {
	return `
source in: kafka {
  brokers            = ["${env:KAFKA_BROKERS}"]
  topic              = "killin"
  group              = "` + group + `"
  format             = json
  schema             = Event
  session_timeout    = 1s
  heartbeat_interval = 300ms
}
`
}

// killKafkaOut is a kill test pipeline's Kafka sink and its flow from.
func killKafkaOut(topic, from string) string {
	return `
sink out: kafka {
  brokers = ["${env:KAFKA_BROKERS}"]
  topic   = "` + topic + `"
}

` + from + ` -> out
`
}

// killInstances are the instances the kill test runs.
var killInstances = []string{
	InstanceID("killgen", 0), InstanceID("killk2k", 0), InstanceID("killk2k", 1),
	InstanceID("killk2pg", 0), InstanceID("killpg2k", 0),
}

// TestClusterKill runs three workers and four pipelines (five instances)
// and kills workers at random (SIGKILL, or SIGSTOP past the session
// timeout and SIGCONT: a zombie that comes back) while input flows,
// restarting each: every instance runs at the end, every exactly-once
// output holds every input record once, the two instances of killk2k run
// on two workers, and no instance committed from two workers at once:
// the PostgreSQL sink's fences show every epoch's last commit before the
// next epoch began, and no Kafka output has a record of a producer epoch
// older than one committed before it. Each worker has a state directory
// of its own: a paused worker holds no lock that keeps its instances from
// starting elsewhere, so the sinks' fencing alone keeps it from committing
// once it wakes (the first SIGSTOP goes to the worker running killk2pg).
// It measures the failover time: from
// a SIGKILL to the victim's instances running on other workers. It makes
// at least 15 kills, PIPE_KILLTEST_KILLS if more.
func TestClusterKill(t *testing.T) {
	_, kills := proctest.KillTest(t, 0, 15)
	kills = max(kills, 15)
	pg := killPG(t)
	bin := proctest.BuildPipe(t)
	brokers := proctest.StartBroker(t, bin, 1, "--topic", "killin:4", "--topic", "killout:2",
		"--topic", "killpgout", "--topic", "killgen")
	state := t.TempDir()
	env := []string{"KAFKA_BROKERS=" + brokers, "CLUSTER_PG=" + pg.dsn}
	workers := map[string]*worker{}
	var ever []*worker // every worker process, for their logs
	for _, id := range []string{"w1", "w2", "w3"} {
		workers[id] = startWorker(t, bin, brokers, id, filepath.Join(state, id), env)
		ever = append(ever, workers[id])
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	client := func(not string) *Client {
		for _, id := range []string{"w1", "w2", "w3"} {
			if id != not {
				return &Client{URL: workers[id].url, HTTP: hc}
			}
		}
		return nil
	}
	ctx := context.Background()
	members := func(c *Client) error {
		ws, err := c.Workers(ctx)
		if err == nil && len(ws.Members) != 3 {
			err = fmt.Errorf("%d members", len(ws.Members))
		}
		return err
	}
	waitFor(t, 30*time.Second, "three workers", func() error { return members(client("")) })
	for _, n := range slices.Sorted(maps.Keys(killPipelines)) {
		text := strings.ReplaceAll(killPipelines[n], "SCHEMA.", pg.schema+".")
		if _, err := client("").Deploy(ctx, n, n+".pipe", []byte(text)); err != nil {
			var rej *Rejected
			if errors.As(err, &rej) {
				t.Fatalf("deploy %s: %v\n%s", n, err, rej.JSON)
			}
			t.Fatalf("deploy %s: %v", n, err)
		}
	}
	pcl, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	defer pcl.Close()

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 19))
	const chunk = 200
	sent := 0
	var failovers []time.Duration
	allRunning := func(c *Client) (map[string]Instance, error) {
		placed, err := runningInstances(ctx, c)
		if err != nil {
			return nil, err
		}
		if len(placed) != len(killInstances) {
			return nil, fmt.Errorf("running: %v", workersOf(placed))
		}
		a, b := placed[InstanceID("killk2k", 0)], placed[InstanceID("killk2k", 1)]
		if a.Worker == b.Worker {
			return nil, fmt.Errorf("both instances of killk2k run on %s", a.Worker)
		}
		return placed, nil
	}
	for k := range kills {
		var placed map[string]Instance
		waitFor(t, 60*time.Second, "every instance running, killk2k's two on two workers", func() error {
			var err error
			placed, err = allRunning(client(""))
			return err
		})
		victim := fmt.Sprintf("w%d", 1+rng.IntN(3))
		sig := syscall.SIGKILL
		if k%3 == 2 {
			sig = syscall.SIGSTOP
		}
		if k == 2 {
			victim = placed[InstanceID("killk2pg", 0)].Worker
		}
		produceIDs(t, pcl, "killin", sent, sent+chunk)
		pg.insert(t, sent, sent+chunk)
		sent += chunk
		time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
		owned := 0
		for _, in := range placed {
			if in.Worker == victim {
				owned++
			}
		}
		start := time.Now()
		workers[victim].cmd.Process.Signal(sig)
		c := client(victim)
		if sig == syscall.SIGSTOP {
			// Its instances start elsewhere meanwhile; it wakes, learns
			// it was dropped and stops them: their last checkpoint is
			// refused by the sinks' fencing.
			time.Sleep(2 * 2 * time.Second) // twice the session timeout
			workers[victim].cmd.Process.Signal(syscall.SIGCONT)
		}
		if owned > 0 {
			// Started again in a later generation: on another worker, or,
			// for a paused one that is back, on any.
			waitFor(t, 60*time.Second, "the victim's instances running again", func() error {
				got, err := runningInstances(ctx, c)
				if err != nil {
					return err
				}
				for id, in := range placed {
					if in.Worker != victim {
						continue
					}
					if g, ok := got[id]; !ok || g.Generation <= in.Generation || sig == syscall.SIGKILL && g.Worker == victim {
						return fmt.Errorf("%s: %+v", id, g.Status)
					}
				}
				return nil
			})
			if sig == syscall.SIGKILL {
				failovers = append(failovers, time.Since(start))
			}
		}
		t.Logf("kill %d: %s of %s (%d instances), moved after %s", k+1, sig, victim, owned, time.Since(start).Round(10*time.Millisecond))
		if sig != syscall.SIGSTOP {
			workers[victim].cmd.Wait()
			workers[victim] = startWorker(t, bin, brokers, victim, filepath.Join(state, victim), env)
			ever = append(ever, workers[victim])
		}
		waitFor(t, 60*time.Second, "three workers again", func() error { return members(c) })
	}
	waitFor(t, 90*time.Second, "every record exactly once", func() error {
		if err := exactlyOnce(readIDs(t, brokers, "killout"), 0, sent); err != nil {
			return fmt.Errorf("killout (Kafka → Kafka, 2 instances): %w", err)
		}
		if err := exactlyOnce(pg.ids(t), 0, sent); err != nil {
			return fmt.Errorf("k2pg (Kafka → PostgreSQL): %w", err)
		}
		if err := exactlyOnce(readIDs(t, brokers, "killpgout"), 0, sent); err != nil {
			return fmt.Errorf("killpgout (PostgreSQL → Kafka): %w", err)
		}
		return nil
	})
	waitFor(t, 60*time.Second, "every instance running at the end", func() error {
		_, err := allRunning(client(""))
		return err
	})
	// generate → Kafka: the ids 1..n, each once, n as far as it got once
	// undeployed (its instance drains and stops: the topic ends).
	if err := client("").Undeploy(ctx, "killgen"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "killgen stopped", func() error {
		st, err := client("").Pipelines(ctx)
		for _, p := range st {
			if p.Name == "killgen" {
				return fmt.Errorf("still there: %+v", p)
			}
		}
		return err
	})
	time.Sleep(time.Second)
	gen := readIDs(t, brokers, "killgen")
	n := 0
	for id := range gen {
		n = max(n, id)
	}
	if err := exactlyOnce(gen, 1, n+1); err != nil || n < 50 {
		t.Errorf("killgen (generate → Kafka) up to %d: %v", n, err)
	}
	for _, topic := range []string{"killout", "killpgout", "killgen"} {
		if err := epochsNeverRegress(t, brokers, topic); err != nil {
			t.Errorf("%s: %v", topic, err)
		}
	}
	epochs, owners := pg.checkFences(t)
	refused := 0
	for _, w := range ever {
		refused += strings.Count(w.log.String(), errFencedText)
	}
	t.Logf("k2pg's sink took %d epochs on %d workers; %d commits of fenced epochs refused", epochs, owners, refused)
	if refused == 0 {
		// The first SIGSTOP paused killk2pg's worker for twice the
		// session timeout: its instance started elsewhere (a new epoch)
		// and, once awake, the paused worker's final checkpoint must have
		// been refused.
		t.Errorf("no commit of a fenced epoch was refused: the paused worker of killk2pg was not fenced")
	}
	if epochs < 2 {
		t.Errorf("k2pg's sink took %d epochs: it never moved", epochs)
	}
	if len(failovers) > 0 {
		sort.Slice(failovers, func(i, j int) bool { return failovers[i] < failovers[j] })
		t.Logf("failover with a 2s session timeout over %d SIGKILLs that moved instances: median %s, max %s",
			len(failovers), failovers[len(failovers)/2].Round(10*time.Millisecond), slices.Max(failovers).Round(10*time.Millisecond))
	}
}

func workersOf(m map[string]Instance) map[string]string {
	out := map[string]string{}
	for id, in := range m {
		out[id] = in.Worker
	}
	return out
}

// epochsNeverRegress reads a topic's committed records and checks that,
// in every partition, no record of a producer comes with an older epoch
// than one of its records before it: a fenced (older) producer never
// committed after its successor.
func epochsNeverRegress(t *testing.T, brokers, topic string) error {
	t.Helper()
	type key struct {
		partition int32
		producer  int64
	}
	last := map[key]int16{}
	var bad []string
	eachCommitted(t, brokers, topic, func(r *kgo.Record) {
		k := key{r.Partition, r.ProducerID}
		if e, ok := last[k]; ok && r.ProducerEpoch < e {
			bad = append(bad, fmt.Sprintf("partition %d offset %d: producer %d epoch %d after epoch %d",
				r.Partition, r.Offset, r.ProducerID, r.ProducerEpoch, e))
		}
		last[k] = max(last[k], r.ProducerEpoch)
	})
	if len(bad) > 0 {
		return fmt.Errorf("epochs regressed: %s", strings.Join(bad, "; "))
	}
	return nil
}

// errFencedText is in the error of a PostgreSQL commit of a fenced epoch.
const errFencedText = "another run of this pipeline instance took over the sink"

// killDB is the kill test's PostgreSQL schema (cinst_…): the source
// table of killpg2k, the table killk2pg writes and its offsets and fences.
type killDB struct {
	dsn    string
	schema string
	conn   *pgx.Conn
}

func killPG(t *testing.T) *killDB {
	t.Helper()
	dsn := os.Getenv("PIPE_PG_URL")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("postgresql (PIPE_PG_URL or 127.0.0.1:5432): %v", err)
	}
	db := &killDB{dsn: dsn, schema: fmt.Sprintf("cinst_cluster_%06d", rand.IntN(1000000)), conn: conn}
	db.exec(t, "CREATE SCHEMA "+db.schema)
	db.exec(t, "CREATE TABLE "+db.schema+".src (id bigint PRIMARY KEY)")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+db.schema+" CASCADE"); err != nil {
			t.Errorf("drop schema: %v", err)
		}
		conn.Close(ctx)
	})
	return db
}

func (db *killDB) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	if _, err := db.conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// insert adds the source rows from..to-1 (killpg2k reads them).
func (db *killDB) insert(t *testing.T, from, to int) {
	db.exec(t, "INSERT INTO "+db.schema+".src SELECT generate_series($1::bigint, $2::bigint)", from, to-1)
}

// ids counts the ids of the table killk2pg writes.
func (db *killDB) ids(t *testing.T) map[int]int {
	t.Helper()
	out := map[int]int{}
	rows, err := db.conn.Query(context.Background(), "SELECT id, count(*) FROM "+db.schema+".k2pg GROUP BY id")
	if err != nil {
		return out // not created yet
	}
	defer rows.Close()
	for rows.Next() {
		var id, n int64
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		out[int(id)] = int(n)
	}
	if rows.Err() != nil {
		return map[int]int{} // not created yet
	}
	return out
}

// checkFences checks killk2pg's fences: epochs 1..n with no gap, each
// fenced but the last, each epoch's last commit before its fencing and
// its fencing no later than the next epoch's opening. It returns the
// number of epochs and of workers that held one.
func (db *killDB) checkFences(t *testing.T) (epochs, owners int) {
	t.Helper()
	rows, err := db.conn.Query(context.Background(), `SELECT epoch, owner, opened, fenced, last_commit FROM `+db.schema+
		`.offsets_fences WHERE pipeline = 'killk2pg' AND sink = 'out' AND instance = 0 ORDER BY epoch`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	type fence struct {
		epoch              int64
		owner              string
		opened             time.Time
		fenced, lastCommit *time.Time
	}
	var fs []fence
	for rows.Next() {
		var f fence
		if err := rows.Scan(&f.epoch, &f.owner, &f.opened, &f.fenced, &f.lastCommit); err != nil {
			t.Fatal(err)
		}
		fs = append(fs, f)
	}
	seen := map[string]bool{}
	for i, f := range fs {
		seen[f.owner] = true
		if f.epoch != int64(i+1) {
			t.Errorf("fences: epoch %d in place %d", f.epoch, i+1)
		}
		if i == len(fs)-1 {
			if f.fenced != nil {
				t.Errorf("fences: the last epoch %d is fenced", f.epoch)
			}
			continue
		}
		next := fs[i+1]
		switch {
		case f.fenced == nil:
			t.Errorf("fences: epoch %d (%s) is not fenced though epoch %d followed", f.epoch, f.owner, next.epoch)
		case f.lastCommit != nil && !f.lastCommit.Before(*f.fenced):
			t.Errorf("fences: epoch %d (%s) committed at %s, after it was fenced at %s", f.epoch, f.owner, f.lastCommit, f.fenced)
		case f.fenced.After(next.opened):
			t.Errorf("fences: epoch %d fenced at %s, after epoch %d (%s) opened at %s", f.epoch, f.fenced, next.epoch, next.owner, next.opened)
		}
	}
	return len(fs), len(seen)
}
