#!/usr/bin/env bash
# Counts the instructions the benchmark pipelines execute on N records
# (default 100,000) under valgrind's callgrind, with one P: a measure of
# their CPU cost that other load on the machine does not disturb, unlike
# wall-clock or CPU seconds. The garbage collector is off (GOGC=off), as
# its timing would vary the count: allocation shows in the count, the
# collection it costs does not. Prints one line per pipeline.
#
#   bench/instr.sh                # the pipe binary built from this tree
#   PIPE=/tmp/old/pipe bench/instr.sh   # another build, to compare
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-100000}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if [ -z "${PIPE:-}" ]; then
  go build -o "$WORK/pipe" ./cmd/pipe
  PIPE=$WORK/pipe
fi
go build -o "$WORK/geninput" ./bench/cmd/geninput
"$WORK/geninput" -n "$N" -o "$WORK/in.jsonl"

count() { # count NAME: run examples/bench/NAME.pipe under callgrind
  GOGC=off GODEBUG=asyncpreemptoff=1 GOMAXPROCS=1 valgrind --tool=callgrind --callgrind-out-file="$WORK/$1.cg" \
    "$PIPE" run "examples/bench/$1.pipe" --state-dir "$WORK/state-$1" 2>&1 >/dev/null |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p' |
    awk -v p="$1" -v n="$N" '{ printf "%s: %d instructions, %.0f per record\n", p, $1, $1 / n }'
}

PIPE_IN="$WORK/in.jsonl" PIPE_OUT="$WORK/out.jsonl" count file_map_file
N="$N" count gen_map_discard
