// Command kafkapipe runs examples/kafka_to_kafka.pipe once against a
// `pipe broker` child process holding n input events in a 4-partition
// topic, and prints how long the pipeline took to write the expected
// output (the output log's end, read uncommitted) and its process's CPU
// time. With -wrap it runs the pipeline under a command, such as
// valgrind's callgrind: the counts are then dumped with callgrind_control
// and the process killed, as callgrind does not survive the Go runtime's
// signal handling on SIGTERM.
//
//	go build -o /tmp/kafkapipe ./bench/cmd/kafkapipe
//	/tmp/kafkapipe -pipe bin/pipe -n 500000 -delivery exactly_once
//	GOGC=off GOMAXPROCS=1 /tmp/kafkapipe -pipe bin/pipe -n 100000 \
//	  -wrap "valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out"
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"

	"pipe.dev/pipe/internal/proctest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kafkapipe:", err)
		os.Exit(1)
	}
}

func run() error {
	pipe := flag.String("pipe", "", "pipe binary that runs the pipeline")
	broker := flag.String("broker", "", "pipe binary that runs the broker (default: -pipe)")
	wrap := flag.String("wrap", "", "command the pipeline runs under (space-separated words)")
	n := flag.Int("n", 200000, "input records")
	delivery := flag.String("delivery", "at_least_once", "the pipeline's delivery")
	logLevel := flag.String("log-level", "info", "the pipeline's --log-level")
	example := flag.String("example", "examples/kafka_to_kafka.pipe", "the pipeline")
	flag.Parse()
	if *pipe == "" {
		return errors.New("-pipe is required")
	}
	if *broker == "" {
		*broker = *pipe
	}
	src, err := os.ReadFile(*example)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "kafkapipe")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	b := osexec.Command(*broker, "broker", "--port", "0", "--topic", "in:4", "--topic", "out:4")
	stdout, err := b.StdoutPipe()
	if err != nil {
		return err
	}
	if err := b.Start(); err != nil {
		return err
	}
	defer func() { b.Process.Signal(syscall.SIGTERM); b.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		return fmt.Errorf("the broker printed no address: %w", err)
	}
	addr := strings.TrimSpace(line)
	if err := proctest.ProduceEvents(context.Background(), nil, addr, "in", 0, *n, 0); err != nil {
		return err
	}
	want := int64(len(proctest.KeptEvents(*n)))

	file := filepath.Join(dir, "pipeline.pipe")
	if err := os.WriteFile(file, []byte(strings.ReplaceAll(string(src), "exactly_once", *delivery)), 0o644); err != nil {
		return err
	}
	args := append(strings.Fields(*wrap), *pipe, "run", "-q", "--log-level", *logLevel, "--state-dir", filepath.Join(dir, "state"), file)
	c := osexec.Command(args[0], args[1:]...)
	c.Env = append(os.Environ(), "KAFKA_BROKERS="+addr, "IN_TOPIC=in", "OUT_TOPIC=out", "GROUP=kafkapipe")
	c.Stderr = os.Stderr
	if err := c.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- c.Wait() }()
	done, err := waitOutput(addr, want, exited)
	if err != nil {
		return err
	}
	if *wrap != "" {
		if out, err := osexec.Command("callgrind_control", "-d", fmt.Sprint(c.Process.Pid)).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "callgrind_control: %v %s\n", err, out)
		}
		c.Process.Kill()
	} else {
		c.Process.Signal(syscall.SIGTERM)
	}
	<-exited
	cpu := c.ProcessState.UserTime() + c.ProcessState.SystemTime()
	fmt.Printf("%s n=%d output written in %.3f s (%.0f records/s), CPU %.3f s (%.0f ns/record)\n", *delivery, *n,
		done.Seconds(), float64(*n)/done.Seconds(), cpu.Seconds(), float64(cpu.Nanoseconds())/float64(*n))
	return nil
}

// waitOutput polls the end of the output log until it holds want records
// and returns how long that took; it fails when the pipeline exits first.
func waitOutput(addr string, want int64, exited <-chan error) (time.Duration, error) {
	start := time.Now()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	cl := &kafka.Client{Addr: kafka.TCP(addr), Transport: tr}
	reqs := []kafka.OffsetRequest{kafka.LastOffsetOf(0), kafka.LastOffsetOf(1), kafka.LastOffsetOf(2), kafka.LastOffsetOf(3)}
	for {
		select {
		case err := <-exited:
			return 0, fmt.Errorf("the pipeline exited before its output was written: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
		res, err := cl.ListOffsets(context.Background(), &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{"out": reqs}})
		if err != nil {
			continue
		}
		var sum int64
		for _, po := range res.Topics["out"] {
			sum += po.LastOffset
		}
		if sum >= want {
			return time.Since(start), nil
		}
	}
}
