package testkit

import (
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

// Env returns the value of the environment variable name, or def when it
// is unset or empty: where the tests find their servers (the local ones by
// default) and the credentials for them.
func Env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// Await calls probe every 100 ms until it returns nil, and returns its
// last error if it has not done so within timeout (a server started
// again that does not answer).
func Await(timeout time.Duration, probe func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := probe()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Dialable returns a probe for Await: nil once the TCP address addr
// accepts connections.
func Dialable(addr string) func() error {
	return func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}
}

// Stop sends SIGTERM to the process pid (a server the machine runs) and
// waits until it is gone, at most timeout.
func Stop(pid int, timeout time.Duration) error {
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stopping pid %d: %w", pid, err)
	}
	return Await(timeout, func() error {
		if syscall.Kill(pid, 0) == nil {
			return fmt.Errorf("pid %d did not stop in %v", pid, timeout)
		}
		return nil
	})
}
