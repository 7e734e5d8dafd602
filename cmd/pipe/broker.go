package main

import (
	"context"
	"fmt"
	"net"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"pipe.dev/pipe/stdlib/kafka/devbroker"
	"pipe.dev/pipe/stdlib/schemareg/devreg"
)

func cmdBroker(e *env, args []string) int {
	fs := newFlags(e, "broker", "", `Run an embedded Kafka-protocol broker for development and tests: it creates the listed
topics, auto-creates others on first use, prints its address and runs until signalled.
It is not a production broker: one process, no replication, no security by default.`)
	port := fs.Int("port", 9092, "port to listen on (0 picks a free one)")
	host := fs.String("host", "127.0.0.1", "address to listen on")
	partitions := fs.Int("partitions", 1, "partitions of auto-created topics and of --topic without a count")
	topics := fs.StringArray("topic", nil, "topic to create, NAME or NAME:PARTITIONS (repeatable)")
	dataDir := fs.String("data-dir", "", "directory that keeps the broker's data across restarts (default: memory only)")
	withRegistry := fs.Bool("schema-registry", false, "also serve a Confluent-compatible schema registry (in memory, for development only)")
	registryPort := fs.Int("registry-port", 8081, "port of the schema registry (0 picks a free one)")
	if code, ok := parseFlags(fs, args, nArgs(0)); !ok {
		return code
	}
	opts := devbroker.Options{Port: *port, Host: *host, Partitions: *partitions, DataDir: *dataDir}
	for _, t := range *topics {
		name, n, err := parseTopicFlag(t)
		if err != nil {
			return e.fail(exitUsage, "--topic %q: %v", t, err)
		}
		opts.Topics = append(opts.Topics, devbroker.Topic{Name: name, Partitions: n})
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	b, err := devbroker.Start(ctx, opts)
	if err != nil {
		return e.fail(exitUsage, "broker: %v", err)
	}
	defer b.Close()
	fmt.Fprintf(e.stdout, "%s\n", b.Addr())
	fmt.Fprintf(e.stderr, "pipe: development broker listening on %s (not for production); Ctrl-C stops it\n", b.Addr())
	if *withRegistry {
		reg, err := devreg.Start(net.JoinHostPort(*host, strconv.Itoa(*registryPort)))
		if err != nil {
			return e.fail(exitUsage, "%v", err)
		}
		defer reg.Close()
		fmt.Fprintf(e.stdout, "%s\n", reg.URL())
		fmt.Fprintf(e.stderr, "pipe: development schema registry at %s (in memory, not for production)\n", reg.URL())
	}
	<-ctx.Done()
	return exitOK
}

// parseTopicFlag parses NAME or NAME:PARTITIONS.
func parseTopicFlag(s string) (string, int, error) {
	name, count, found := strings.Cut(s, ":")
	if name == "" {
		return "", 0, fmt.Errorf("empty topic name")
	}
	if !found {
		return name, 0, nil
	}
	n, err := strconv.Atoi(count)
	if err != nil || n < 1 {
		return "", 0, fmt.Errorf("partitions must be a positive integer")
	}
	return name, n, nil
}
