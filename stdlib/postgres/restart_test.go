package postgres

import (
	"context"
	"os"
	osexec "os/exec"
	"testing"
	"time"
)

// restartServer restarts the local PostgreSQL cluster (root only).
func restartServer(t *testing.T) {
	t.Helper()
	versions, err := os.ReadDir("/etc/postgresql")
	if err != nil || len(versions) == 0 {
		t.Fatalf("no local postgresql cluster to restart: %v", err)
	}
	out, err := osexec.Command("pg_ctlcluster", "--skip-systemctl-redirect", versions[0].Name(), "main", "restart").CombinedOutput()
	if err != nil {
		t.Errorf("restart postgresql: %v: %s", err, out)
	}
}

// waitConn replaces the test's own connection, which the restart broke.
func waitConn(ctx context.Context, t *testing.T, e *pgEnv) {
	t.Helper()
	for {
		c, err := connect(ctx, testDSN())
		if err == nil {
			e.conn = c
			return
		}
		if ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
