package state

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// lockDir takes an exclusive advisory lock (flock) on dir's lock file and
// writes this process's id into it, for the message another process gets.
// The kernel drops the lock when the process dies, so a crash never leaves
// the directory locked.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := "another process"
			if pid := string(bytes.TrimSpace(holder)); pid != "" {
				who = "process " + pid
			}
			return nil, fmt.Errorf("state directory %s is %w by %s (another pipe run or pipe offsets); stop it first, or give this run its own --state-dir", dir, ErrLocked, who)
		}
		return nil, fmt.Errorf("state: locking %s: %w", dir, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// unlock releases and closes a lock taken by lockDir.
func unlock(f *os.File) error {
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return f.Close()
}
