// Package all registers every component package of the standard library
// into stdlib.Default by importing them for their side effects.
//
// Role: wiring for binaries and tests (cmd/pipe, spec, examples); library
// code takes a *stdlib.Registry instead of importing this package.
package all

import (
	_ "pipe.dev/pipe/stdlib/amqp"     // rabbitmq source and sink
	_ "pipe.dev/pipe/stdlib/core"     // generate, file, stdin, stdout, discard, filter, map, route
	_ "pipe.dev/pipe/stdlib/http"     // http sink, http_server and http_poll sources
	_ "pipe.dev/pipe/stdlib/kafka"    // kafka source and sink
	_ "pipe.dev/pipe/stdlib/mqtt"     // mqtt source and sink
	_ "pipe.dev/pipe/stdlib/mysql"    // mysql source and sink
	_ "pipe.dev/pipe/stdlib/nats"     // nats (JetStream) and nats_core source and sink
	_ "pipe.dev/pipe/stdlib/postgres" // postgres sink
	_ "pipe.dev/pipe/stdlib/redis"    // redis source and sink
	_ "pipe.dev/pipe/stdlib/s3"       // s3 source and sink
)
