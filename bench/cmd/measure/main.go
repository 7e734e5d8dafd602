// Command measure runs a command and prints, as one JSON object, its wall
// time, CPU time (user + system, children included) and peak resident set
// size, read from the kernel's resource usage of the child.
//
//	measure [-i FILE] [-o FILE] -- command args...
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"syscall"
	"time"

	"github.com/spf13/pflag"
)

// result is what measure prints.
type result struct {
	Command  []string `json:"command"`
	ExitCode int      `json:"exit_code"`
	WallS    float64  `json:"wall_s"`
	UserS    float64  `json:"user_s"`
	SysS     float64  `json:"sys_s"`
	CPUS     float64  `json:"cpu_s"`
	MaxRSSKB int64    `json:"max_rss_kib"`
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("measure", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.StringP("input", "i", "", "file to feed the command's standard input")
	out := fs.StringP("output", "o", "", "file to receive the command's standard output (default: discarded)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cmdArgs := fs.Args()
	if len(cmdArgs) == 0 {
		fmt.Fprintln(stderr, "usage: measure [-i FILE] [-o FILE] -- command args...")
		return 2
	}
	cmd := osexec.Command(cmdArgs[0], cmdArgs[1:]...)
	cmd.Stderr = stderr
	if *in != "" {
		f, err := os.Open(*in)
		if err != nil {
			fmt.Fprintln(stderr, "measure:", err)
			return 2
		}
		defer f.Close()
		cmd.Stdin = f
	}
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			fmt.Fprintln(stderr, "measure:", err)
			return 2
		}
		defer f.Close()
		cmd.Stdout = f
	}
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	res := result{Command: cmdArgs, WallS: wall.Seconds()}
	if cmd.ProcessState == nil {
		fmt.Fprintln(stderr, "measure:", err)
		return 2
	}
	res.ExitCode = cmd.ProcessState.ExitCode()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.UserS = time.Duration(ru.Utime.Nano()).Seconds()
		res.SysS = time.Duration(ru.Stime.Nano()).Seconds()
		res.MaxRSSKB = ru.Maxrss // KiB on Linux
	}
	res.CPUS = res.UserS + res.SysS
	b, _ := json.Marshal(res)
	fmt.Fprintln(stdout, string(b))
	if res.ExitCode != 0 {
		return 1
	}
	return 0
}
