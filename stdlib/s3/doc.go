// Package s3 holds the S3 sink and source: objects in a bucket of Amazon
// S3 or any S3-compatible store (MinIO, Ceph RGW, SeaweedFS, Versity's
// gateway, Cloudflare R2, GCS in interoperability mode, ...).
//
// Role: run-time components. The compiler sees only their specs
// ([SinkSpec], [SourceSpec]); the executor builds one instance per task and
// drives it through the stdlib contracts. Nothing here dials the server
// before Open.
//
// # Client
//
// The client is github.com/minio/minio-go/v7 rather than aws-sdk-go-v2:
// it is one module (aws-sdk-go-v2 brings a dozen: the S3 service, config,
// credentials, signing, checksums, smithy), it is built and tested against
// S3-compatible servers as much as against AWS (path-style addressing,
// servers that do not send AWS's headers), and it does what the connector
// needs with no extra layer: PutObject switches to a multipart upload
// with parallel parts above PartSize and aborts it when it fails, and
// ListIncompleteUploads / RemoveIncompleteUpload find and abort the
// uploads a killed process left. It signs with AWS Signature V4 (static
// keys, optionally a session token), speaks TLS with a CA or server name
// of one's own, and is Apache-2.0 licensed. Its own retries are turned off
// (MaxRetries 1): a failed request is retried with backoff through
// stdlib/retry, bounded by retry_timeout, as every connector does.
// Parquet is written with github.com/parquet-go/parquet-go.
//
// # Sink
//
// The sink writes one object per prefix (prefix := expr, evaluated per
// record: a field partitioner, "region=" + region + "/", or a time
// partitioner, "dt=" + format_time(ts, "2006-01-02") + "/") and source
// partition at a time, encoded in memory as JSON lines, CSV or Parquet
// (columns from the record type). An object is completed after
// rotate_records records, rotate_size bytes or rotate_interval, and at
// the latest at the checkpoint; it is named by the source positions it
// holds, <prefix><source>.<partition>.<first>-<last>.<ext>, and uploaded
// whole: in one PUT, or as a multipart upload in parts of part_size.
//
// Delivery:
//   - exactly_once: the commit record <state_prefix><pipeline>.<stage>.<task>.json
//     in the bucket holds the positions the task committed and the keys
//     of the objects uploaded since (pending). Before objects are uploaded
//     (when completed ones add up to upload_size, and at a checkpoint)
//     their keys join the pending list; once the checkpoint's objects are
//     all uploaded, one PUT replaces the record by the checkpoint's
//     positions and an empty pending list: the commit. At Open the pending
//     objects — of no checkpoint — are deleted and their unfinished
//     multipart uploads aborted, and the committed positions are returned
//     as held, so the records they held are replayed into objects named
//     again by their positions: nothing is doubled, nothing lost. The sink
//     is a [stdlib.PositionStore] (pipe offsets).
//   - at_least_once: the same, but Open holds nothing: what the sources
//     replay is written again.
//
// # Source
//
// The source lists the objects under a prefix in key order, each a
// partition named by its key, and reads JSON lines, CSV or Parquet.
// Offsets are the byte offsets after each line, or Parquet row numbers
// (from 1; a Parquet object is read by ranged GETs, footer first, and a
// resumed one seeks to its row); the identity of an object's positions is
// its ETag (and version ID), so a replaced object is read again from its
// start while an unchanged one resumes where it was, by a ranged GET that
// must match the ETag listed. Records carry meta.object (the key) and
// meta.timestamp (the object's last-modified time). With watch = true the
// prefix is listed again every poll.
package s3
