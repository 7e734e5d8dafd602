#!/usr/bin/env bash
# Runs the benchmark pipelines of examples/bench on N records (default
# 1,000,000) and the two Go baselines on the same input — bench/tuned
# (fastjson, bytes appended, no maps) and bench/baseline (encoding/json and
# map[string]any) — R times in interleaved rounds (default 3), checks that
# every program wrote the same output, then appends the medians of wall
# time, CPU seconds and peak RSS, and pipe's wall time and CPU per record as
# ratios to both baselines, to bench/RESULTS.md.
#
#   bench/run.sh                 # 1,000,000 records, 3 rounds
#   N=200000 R=5 bench/run.sh    # fewer records, more rounds
#   BENCH_DIR=/tmp/b bench/run.sh  # keep inputs and outputs there
#   BEFORE=/tmp/old/pipe bench/run.sh  # also another build of pipe, in the same
#                                      # rounds (rows file_map_file_before, ...)
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-1000000}
R=${R:-3}
WORK=${BENCH_DIR:-$(mktemp -d)}
RESULTS=bench/RESULTS.md
mkdir -p bin "$WORK"
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

echo "building" >&2
go build -o bin/pipe ./cmd/pipe
go build -o bin/geninput ./bench/cmd/geninput
go build -o bin/baseline ./bench/baseline
go build -o bin/tuned ./bench/tuned
go build -o bin/measure ./bench/cmd/measure

if [ ! -s "$WORK/in-$N.jsonl" ]; then
  echo "generating $N records" >&2
  bin/geninput -n "$N" -o "$WORK/in-$N.jsonl"
fi
IN="$WORK/in-$N.jsonl"

field() { # field NAME JSON
  printf '%s' "$2" | sed -n "s/.*\"$1\":\([-0-9.e+]*\).*/\1/p"
}

measure() { # measure NAME [measure flags] -- command...: a failure is recorded, not fatal
  local name=$1; shift
  echo "round $round: $name" >&2
  bin/measure "$@" >"$WORK/$name.json" || echo "$name failed: $(cat "$WORK/$name.json")" >&2
  cat "$WORK/$name.json" >>"$WORK/$name.runs"
  echo >>"$WORK/$name.runs"
}

median() { # median NAME FIELD: the median of FIELD over NAME's successful runs
  grep '"exit_code":0' "$WORK/$1.runs" | sed -n "s/.*\"$2\":\([-0-9.e+]*\).*/\1/p" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

PROGS="tuned baseline file_map_file gen_map_discard stdin_map_stdout"
CHECKED="baseline file_map_file stdin_map_stdout"
if [ -n "${BEFORE:-}" ]; then
  PROGS="$PROGS file_map_file_before gen_map_discard_before"
  CHECKED="$CHECKED file_map_file_before"
fi

rm -rf "$WORK/state-"* "$WORK"/out-* "$WORK"/.out-* "$WORK"/*.runs
for round in $(seq 1 "$R"); do
  rm -rf "$WORK/state-"* "$WORK"/out-* "$WORK"/.out-*
  measure tuned -- bin/tuned -i "$IN" -o "$WORK/out-tuned.jsonl"
  PIPE_IN="$IN" PIPE_OUT="$WORK/out-file_map_file.jsonl" \
    measure file_map_file -- bin/pipe run examples/bench/file_map_file.pipe --state-dir "$WORK/state-file"
  measure baseline -- bin/baseline -i "$IN" -o "$WORK/out-baseline.jsonl"
  N="$N" measure gen_map_discard -- bin/pipe run examples/bench/gen_map_discard.pipe --state-dir "$WORK/state-gen"
  measure stdin_map_stdout -i "$IN" -o "$WORK/out-stdin_map_stdout.jsonl" -- \
    bin/pipe run examples/bench/stdin_map_stdout.pipe --state-dir "$WORK/state-stdin"
  if [ -n "${BEFORE:-}" ]; then
    PIPE_IN="$IN" PIPE_OUT="$WORK/out-file_map_file_before.jsonl" \
      measure file_map_file_before -- "$BEFORE" run examples/bench/file_map_file.pipe --state-dir "$WORK/state-file-before"
    N="$N" measure gen_map_discard_before -- "$BEFORE" run examples/bench/gen_map_discard.pipe --state-dir "$WORK/state-gen-before"
  fi

  # Every program must write what the tuned loop writes, byte for byte.
  for p in $CHECKED; do
    if [ "$(field exit_code "$(cat "$WORK/$p.json")")" = 0 ] && ! cmp -s "$WORK/out-tuned.jsonl" "$WORK/out-$p.jsonl"; then
      echo "$p wrote $(wc -l <"$WORK/out-$p.jsonl") lines differing from the tuned loop's $(wc -l <"$WORK/out-tuned.jsonl")" >&2
      exit 1
    fi
  done
done

t_wall=$(median tuned wall_s); t_cpu=$(median tuned cpu_s)
b_wall=$(median baseline wall_s); b_cpu=$(median baseline cpu_s)
{
  echo
  echo "## $(date -u '+%Y-%m-%d %H:%M UTC') — $N records, medians of $R interleaved rounds"
  echo
  echo "Machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); $(go version | cut -d' ' -f3); commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown); load average before the run: $LOAD."
  echo "records/s counts input records (all $N, before the filter) per wall-clock second; CPU s is user + system time; the ratios are a run's wall time and CPU seconds (per record: all runs read the same $N) over the tuned loop's (÷ tuned) and the encoding/json loop's (÷ json), below 1 when the run is the faster.${BEFORE:+ Rows ending in _before ran the build $BEFORE names.} Command: \`${BEFORE:+BEFORE=$BEFORE }bench/run.sh\`."
  echo
  echo "| run | wall s | records/s | CPU s | peak RSS MiB | wall ÷ tuned | CPU ÷ tuned | wall ÷ json | CPU ÷ json |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  for p in $PROGS; do
    wall=$(median "$p" wall_s)
    if [ -z "$wall" ]; then
      echo "| $p | failed | | | | | | | |"
      continue
    fi
    awk -v p="$p" -v n="$N" -v w="$wall" -v c="$(median "$p" cpu_s)" -v r="$(median "$p" max_rss_kib)" \
      -v tw="$t_wall" -v tc="$t_cpu" -v bw="$b_wall" -v bc="$b_cpu" \
      'BEGIN { printf "| %s | %.2f | %.0f | %.2f | %.1f | %.2f | %.2f | %.2f | %.2f |\n", p, w, n / w, c, r / 1024, w / tw, c / tc, w / bw, c / bc }'
  done
} >>"$RESULTS"
tail -n 8 "$RESULTS"
