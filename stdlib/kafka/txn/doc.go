// Package txn is a transactional Kafka producer built on kafka-go's Client
// and protocol packages, which have no transactional producer of their own.
//
// Role: the exactly-once path of the kafka sink. [New] calls InitProducerID
// for a transactional.id, which fences every older producer of that id and
// aborts its open transaction. [Producer.Produce] adds a partition to the
// transaction on first use, encodes a v2 record batch with the
// transactional attribute, patches producer id (byte 43), epoch (51) and
// base sequence (53) into it, recomputes the CRC-32C over bytes 21 onwards
// and sends it with RawProduce. [Producer.Commit] and [Producer.Abort] end
// the transaction with EndTxn.
//
// Invariants: one transaction is open at a time; sequence numbers grow per
// partition within an epoch; after [ErrFenced] the producer is unusable.
package txn
