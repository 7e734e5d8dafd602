package postgres

import (
	"fmt"
	"math/rand/v2"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"pipe.dev/pipe/internal/proctest"
)

// testBrokerRestart runs the example, inserting into a table without a
// key (a record written twice would show as two rows), against a `pipe
// broker` that keeps its data on disk, and takes the broker down twice
// while input arrives: for 5 s each time, killed (SIGKILL) the first time
// and stopped (SIGTERM) the second, then started again. `pipe run` must
// not exit; after each restart, once the table caught up, it must hold
// every record produced so far exactly once, each row as the pipeline
// makes it.
func testBrokerRestart(t *testing.T, e *pgEnv, bin, root, dir string, src []byte, n int) {
	broker := proctest.StartDurableBroker(t, bin, 4, filepath.Join(dir, "broker"))
	in := fmt.Sprintf("restart-in-%d", rand.IntN(1e9))
	newTopic(t, broker.Addr, in, 4)
	file := pipelineFile(t, src, e, dir, "broker_restart", true)
	table := e.table("broker_restart")
	cmd := osexec.Command(bin, "run", "-q", "--state-dir", filepath.Join(dir, "state-broker_restart"), file)
	cmd.Env = append(os.Environ(), "KAFKA_BROKERS="+broker.Addr, "IN_TOPIC="+in, "GROUP="+in,
		"PG_URL="+testDSN(), "PG_TABLE="+table)
	cmd.Dir = root
	cmd.Stderr = &proctest.LogWriter{T: t, Prefix: "broker_restart: "}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	check := func(written int) {
		select {
		case err := <-exited:
			t.Fatalf("pipe run exited during a broker outage: %v", err)
		default:
		}
		waitRows(t, e, table, len(proctest.KeptEvents(written)), time.Minute)
		checkRows(t, e, table, written)
	}
	broker.OutagesDuring(in, n, 5*time.Second, check, syscall.SIGKILL, syscall.SIGTERM)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := <-exited; err != nil {
		t.Fatalf("pipe run: %v", err)
	}
}

// checkRows checks that table holds, exactly once each, the rows the
// example makes of input events 0 to n-1, column by column.
func checkRows(t *testing.T, e *pgEnv, table string, n int) {
	t.Helper()
	r := tallyRows(t, e, table, n)
	if r.Missing > 0 || r.Doubled > 0 || r.Extra > 0 {
		t.Fatalf("table %s: %d missing, %d doubled, %d unexpected", table, r.Missing, r.Doubled, r.Extra)
	}
}

// tallyRows tallies the ids of table against input events 0 to n-1 and
// fails t for a row not as the example makes it.
func tallyRows(t *testing.T, e *pgEnv, table string, n int) proctest.Tallied {
	t.Helper()
	want := proctest.KeptEvents(n)
	rows, err := e.conn.Query(t.Context(), "SELECT id, customer, amount, country, event, ts, region FROM "+table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ids []int64
	wrong := 0
	for rows.Next() {
		var (
			id                            int64
			customer, country, event, reg string
			amount                        float64
			ts                            time.Time
		)
		if err := rows.Scan(&id, &customer, &amount, &country, &event, &ts, &reg); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		i := int(id)
		wantAmount, _ := strconv.ParseFloat(fmt.Sprintf("%.2f", proctest.EventAmount(i)), 64)
		wantTS := time.Date(2024, 1, 1, 0, 0, i%60, 0, time.UTC)
		if want[id] && (customer != fmt.Sprintf("u%d", i%100) || amount != wantAmount || country != "NL" ||
			event != "purchase" || !ts.Equal(wantTS) || reg != "EU") {
			if wrong < 5 {
				t.Errorf("row %d: customer %q amount %v country %q event %q ts %v region %q", id, customer, amount, country, event, ts, reg)
			}
			wrong++
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	missing, doubled, extra := proctest.Tally(want, ids)
	t.Logf("%d input records: %d rows expected, %d in the table, %d missing, %d doubled, %d unexpected, %d wrong",
		n, len(want), len(ids), missing, doubled, extra, wrong)
	if wrong > 0 {
		t.Fatalf("table %s: %d rows wrong", table, wrong)
	}
	return proctest.Tallied{Read: len(ids), Missing: missing, Doubled: doubled, Extra: extra}
}
