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
// A lost connection interrupts the producer: its transaction may be
// incomplete, or gone with a broker that restarted. The producer keeps the
// encoded batches of the open transaction until it ends, so
// [Producer.Restart] (InitProducerID with the current producer id and
// epoch, KIP-360: the next epoch, aborting what is left of the
// transaction; refused when another producer took the id over) and
// [Producer.Replay] (the kept batches, patched with the new epoch and
// sequence numbers) start it over; [Producer.Forget] drops them when the
// transaction turns out to have committed.
//
// Invariants: one transaction is open at a time; sequence numbers grow per
// partition within an epoch; after [ErrFenced] the producer is unusable
// (Restart excepted).
package txn
