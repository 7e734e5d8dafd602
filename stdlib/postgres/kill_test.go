package postgres

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pipe.dev/pipe/internal/proctest"

	"github.com/segmentio/kafka-go"
)

// TestKill runs, through proctest.Kill, examples/kafka_to_postgres.pipe under `pipe run` against
// `pipe broker` and the test server, SIGKILLs it at random moments,
// restarts it, and checks that the table holds every expected record
// exactly once. The "insert" variant writes to a table without a key, so
// that a record written twice would show as two rows. Each variant runs
// twice in a row with the same state directory, topic and group names: the
// second round against a fresh broker, whose offsets start again at 0, into
// a new table (with half the kills); the new table must get every record,
// not only those past the first round's offsets. With PIPE_PG_RESTART=1 a
// last variant (one round) restarts PostgreSQL itself twice during a run.
// The "broker_restart" variant takes the broker down twice instead
// (testBrokerRestart). Set PIPE_KILLTEST=1 to run it; PIPE_KILLTEST_RECORDS
// and PIPE_KILLTEST_KILLS scale it.
func TestKill(t *testing.T) {
	n, kills := proctest.KillTest(t, 100000, 20)
	e := newPG(t)
	root := proctest.ModuleRoot(t)
	dir := t.TempDir()
	bin := proctest.BuildPipe(t)
	src, err := os.ReadFile(filepath.Join(root, "examples", "kafka_to_postgres.pipe"))
	if err != nil {
		t.Fatal(err)
	}
	variants := []string{"upsert", "insert"}
	if os.Getenv("PIPE_PG_RESTART") == "1" {
		variants = append(variants, "pg_restart")
	}
	for _, variant := range variants {
		t.Run(variant, func(t *testing.T) {
			in := fmt.Sprintf("kill-in-%s-%d", variant, rand.IntN(1e9))
			file := pipelineFile(t, src, e, dir, variant, variant == "insert")
			k := &killCase{e: e, bin: bin, root: root, file: file, state: filepath.Join(dir, "state-"+variant),
				variant: variant, topic: in}
			rounds, roundKills := 2, kills
			if variant == "pg_restart" {
				rounds = 1
			}
			for round := 1; round <= rounds; round++ {
				ok := t.Run(fmt.Sprintf("round%d", round), func(t *testing.T) {
					brokers := proctest.StartBroker(t, bin, 4) // stopped when the round ends
					newTopic(t, brokers, in, 4)
					table := e.table(fmt.Sprintf("kill_%s_%d", variant, round))
					k.round(t, brokers, table, n, roundKills)
				})
				if !ok {
					break
				}
				roundKills = kills / 2
			}
		})
	}
	t.Run("broker_restart", func(t *testing.T) { testBrokerRestart(t, e, bin, root, dir, src, n) })
}

// pipelineFile writes the example as name.pipe, upserting or, with
// insert, inserting into a table without a key (where a record written
// twice shows as two rows), and returns its path.
func pipelineFile(t *testing.T, src []byte, e *pgEnv, dir, name string, insert bool) string {
	text := string(src)
	// A killed member holds its partitions until its session times
	// out: keep that short so that restarts make progress.
	text = strings.Replace(text, "  start   = earliest\n", "  start   = earliest\n  session_timeout = 1s\n", 1)
	// Positions go to the test's own schema.
	text = strings.Replace(text, "  create_table = true\n",
		"  create_table = true\n  offsets_table = \""+e.table("pipe_offsets")+"\"\n", 1)
	if insert {
		text = strings.Replace(text, "  mode         = upsert\n  key          = [\"id\"]\n", "  mode         = insert\n", 1)
	}
	file := filepath.Join(dir, name+".pipe")
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// killCase is one variant of TestKill: its pipeline file and state
// directory, kept across rounds.
type killCase struct {
	e                      *pgEnv
	bin, root, file, state string
	variant, topic         string
}

// round produces n events into the topic on brokers while it runs the
// pipeline kills times, SIGKILLing it at random moments (proctest.Kill),
// then once to the end (restarting the server twice meanwhile in the
// pg_restart variant), and checks that table holds every expected record
// exactly once (tallyRows).
func (k *killCase) round(t *testing.T, brokers, table string, n, kills int) {
	e, variant := k.e, k.variant
	// Records arrive while the pipeline runs, so that kills and restarts
	// hit it in the middle of transactions.
	span := time.Duration(kills) * 2500 * time.Millisecond
	var during func(t *testing.T)
	if variant == "pg_restart" {
		span, kills = 6*time.Second, 0
		during = func(t *testing.T) {
			for range 2 {
				time.Sleep(time.Duration(1500+rand.IntN(1500)) * time.Millisecond)
				restartServer(t)
			}
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			waitConn(ctx, t, e)
			cancel()
		}
	}
	kill := &proctest.Kill{
		Bin: k.bin, File: k.file, State: k.state, Dir: k.root, Name: variant, Kills: kills, During: during,
		Env: []string{"KAFKA_BROKERS=" + brokers, "IN_TOPIC=" + k.topic, "GROUP=" + k.topic,
			"PG_URL=" + testDSN(), "PG_TABLE=" + table},
		Produce: func() error {
			return proctest.ProduceEvents(context.Background(), nil, brokers, k.topic, 0, n, span)
		},
		Progress: func() string { return fmt.Sprintf("%d rows", e.count(table+" WHERE true")) },
		Complete: func(t *testing.T) { waitRows(t, e, table, len(proctest.KeptEvents(n)), 3*time.Minute) },
		Check:    func(t *testing.T) proctest.Tallied { return tallyRows(t, e, table, n) },
	}
	kill.Run(t)
}

// waitRows waits until table holds want rows and no more come for a while.
func waitRows(t *testing.T, e *pgEnv, table string, want int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var quiet time.Time
	last := int64(-1)
	for time.Now().Before(deadline) {
		var n int64
		if err := e.conn.QueryRow(t.Context(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			n = -1 // the table may not exist yet
		}
		if n != last {
			last, quiet = n, time.Time{}
		} else if n >= int64(want) {
			if quiet.IsZero() {
				quiet = time.Now()
			} else if time.Since(quiet) > 3*time.Second {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("table %s has %d rows after %v, want %d", table, last, timeout, want)
}

func newTopic(t *testing.T, brokers, topic string, partitions int) {
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(brokers), Transport: tr, Timeout: 10 * time.Second}
	res, err := c.CreateTopics(t.Context(), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{
		{Topic: topic, NumPartitions: partitions, ReplicationFactor: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Errors[topic]; err != nil {
		t.Fatal(err)
	}
}
