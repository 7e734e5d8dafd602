package postgres

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	osexec "os/exec"
	"strings"
	"testing"
	"time"

	"pipe.dev/pipe/internal/proctest"
)

// cdcKafkaKillPipe captures one table into a Kafka topic as Debezium
// envelopes, exactly once.
const cdcKafkaKillPipe = `pipeline cdc_kafka_kill {
  delivery   = exactly_once
  checkpoint = 500ms
}

source changes: postgres_cdc {
  dsn         = "${env:PG_URL}"
  publication = "${env:PUB}"
  slot        = "${env:SLOT}"
  tables      = ["${env:PG_TABLE}"]
  heartbeat   = 1s
  snapshot    = never // the stream alone; TestKillCDCSnapshot covers the snapshot
}

sink out: kafka {
  brokers  = ["${env:KAFKA_BROKERS}"]
  topic    = "cdcout.changes"
  format   = debezium
  delivery = exactly_once
  create_topic { partitions = 4 }
}

changes -> out
`

// TestKillCDCKafka runs a postgres_cdc -> kafka (format debezium) pipeline
// under `pipe run` against a `pipe broker` while a writer inserts,
// updates and deletes rows, SIGKILLs it at random moments and restarts
// it, then reads the topic with kcat -X isolation.level=read_committed:
// every change once, in commit order per key, keyed by its primary key.
// Set PIPE_KILLTEST=1 to run it; PIPE_KILLTEST_KILLS above 20 scales it.
func TestKillCDCKafka(t *testing.T) {
	_, kills := proctest.KillTest(t, 0, 20)
	kills = max(kills, 20) // at least 20, in CI too (which asks 12 of the other kill tests)
	kcat, err := osexec.LookPath("kcat")
	if err != nil {
		t.Fatal("kcat is not installed (apt-get install kcat)")
	}
	c := newCDCEnv(t)
	c.pub, c.slot = "cdcout_"+c.pub, "cdcout_"+c.slot
	table := c.table("k")
	c.exec("CREATE TABLE " + table + " (id int PRIMARY KEY, v bigint NOT NULL)")
	c.exec("CREATE PUBLICATION " + quote(c.pub) + " FOR TABLE " + table)
	c.exec("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", c.slot)
	bin := proctest.BuildPipe(t)
	brokers := proctest.StartBroker(t, bin, 4)
	topic := "cdcout.changes" // as the pipeline names it
	kill := proctest.NewKill(t, bin, "cdc-kafka", cdcKafkaKillPipe)
	// read returns the committed changes of the topic, failing on a key
	// that is not the row's primary key.
	read := func(t *testing.T) []cdcChange {
		out, err := osexec.Command(kcat, "-C", "-b", brokers, "-t", topic, "-X", "isolation.level=read_committed",
			"-o", "beginning", "-e", "-q", "-f", "%k\t%s\n").Output()
		if err != nil {
			return nil // the topic is not there yet
		}
		var got []cdcChange
		for _, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
			k, v, ok := bytes.Cut(line, []byte("\t"))
			if !ok {
				continue
			}
			var env struct {
				cdcChange
				Op     string         `json:"op"`
				Source map[string]any `json:"source"`
			}
			if err := json.Unmarshal(v, &env); err != nil {
				t.Fatalf("not an envelope: %s: %v", v, err)
			}
			ch := env.cdcChange
			ch.Op = map[string]string{"c": "insert", "u": "update", "d": "delete"}[env.Op]
			row := ch.After
			if ch.Op == "delete" {
				row = ch.Before
			}
			if want := fmt.Sprintf(`{"id":%d}`, row["id"]); string(k) != want || env.Source["table"] != "k" {
				t.Fatalf("key %s, want %s (source %v)", k, want, env.Source)
			}
			got = append(got, ch)
		}
		return got
	}
	w := &cdcWriter{table: table, rows: map[int]bool{}, want: map[int][]string{}}
	span := time.Duration(kills) * 2 * time.Second
	kill.Kills = kills
	kill.Env = []string{"PG_URL=" + testDSN(), "PUB=" + c.pub, "SLOT=" + c.slot, "PG_TABLE=" + table,
		"KAFKA_BROKERS=" + brokers}
	kill.Produce = func() error { return w.run(span) }
	kill.Progress = func() string { return fmt.Sprintf("%d changes written", w.total()) }
	kill.Complete = func(t *testing.T) {
		deadline := time.Now().Add(60 * time.Second)
		for len(read(t)) < w.total() {
			if time.Now().After(deadline) {
				t.Fatalf("%d changes in the topic, want %d", len(read(t)), w.total())
			}
			time.Sleep(500 * time.Millisecond)
		}
		time.Sleep(2 * time.Second) // more would be doubles
	}
	kill.Check = func(t *testing.T) proctest.Tallied { return w.check(t, read(t)) }
	kill.Run(t)

	// pipe offsets show lists the slot's position beside the sink's.
	cmd := osexec.Command(bin, "offsets", "show", "--state-dir", kill.State, kill.File)
	cmd.Env = append(os.Environ(), kill.Env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pipe offsets show: %v\n%s", err, out)
	}
	t.Logf("pipe offsets show:\n%s", out)
	if !strings.Contains(string(out), "source: replication slot "+c.slot+", confirmed flush LSN ") ||
		!strings.Contains(string(out), "sink out (kafka)") {
		t.Errorf("pipe offsets show:\n%s", out)
	}
}
