package exec

import (
	"bytes"
	"os"
	"strconv"
)

// goMemoryLimit returns the soft memory limit for the Go runtime that
// keeps the process's resident memory within lim when files bytes of it
// are pages mapped from files (the executable and libraries: some 30 MiB
// of pipe's binary are touched by start-up), which the runtime does not
// count. At least lim/4 is left to the runtime whatever the files hold.
func goMemoryLimit(lim, files int64) int64 {
	return max(lim-files, lim/4)
}

// fileResident returns the process's resident memory mapped from files,
// RssFile in /proc/self/status, in bytes; 0 when it cannot tell (outside
// Linux).
func fileResident() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range bytes.Lines(b) {
		rest, ok := bytes.CutPrefix(line, []byte("RssFile:"))
		if !ok {
			continue
		}
		kib, err := strconv.ParseInt(string(bytes.TrimSuffix(bytes.TrimSpace(rest), []byte(" kB"))), 10, 64)
		if err != nil || kib < 0 {
			return 0
		}
		return kib << 10
	}
	return 0
}
