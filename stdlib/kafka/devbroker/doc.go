// Package devbroker runs an embedded Kafka-protocol broker (franz-go's kfake)
// inside the current process, for development and tests only: it is not a
// production Kafka. `pipe broker` and the Kafka connector tests start it on a
// local port; any Kafka client (kafka-go, librdkafka, the JVM client) can
// connect to it.
//
// Input: [Options] (port, topics, partitions, optional data directory, TLS
// and SASL users). Output: a running [Broker] whose [Broker.Addr] is the
// bootstrap address. Listed topics exist when [Start] returns; other topics
// are created on first use.
package devbroker
