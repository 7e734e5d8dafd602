// Package state is the executor's embedded checkpoint store: a local
// directory holding the last completed checkpoint of a pipeline (its id and,
// per source partition, the last position every sink made durable).
//
// Phase: run time. Input: checkpoints completed by the executor's
// coordinator. Output: the checkpoint a restarted run resumes from.
//
// Invariants: a Save is durable when it returns (the file is written to a
// temporary name, fsynced, renamed over the previous one and the directory
// fsynced), so a crash leaves either the previous or the new checkpoint,
// never a mix; temporary files left by a crash are ignored and removed.
package state
