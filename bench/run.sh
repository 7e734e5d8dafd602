#!/usr/bin/env bash
# Runs the benchmark pipelines of examples/bench on N records (default
# 1,000,000) and the plain Go baseline on the same input, then appends
# records/s, CPU seconds, peak RSS and the ratio to the baseline to
# bench/RESULTS.md.
#
#   bench/run.sh                 # 1,000,000 records
#   N=200000 bench/run.sh        # fewer
#   BENCH_DIR=/tmp/b bench/run.sh  # keep inputs and outputs there
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-1000000}
WORK=${BENCH_DIR:-$(mktemp -d)}
RESULTS=bench/RESULTS.md
mkdir -p bin "$WORK"
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

echo "building" >&2
go build -o bin/pipe ./cmd/pipe
go build -o bin/geninput ./bench/cmd/geninput
go build -o bin/baseline ./bench/baseline
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
  echo "running $name" >&2
  bin/measure "$@" >"$WORK/$name.json" || echo "$name failed: $(cat "$WORK/$name.json")" >&2
}

rm -rf "$WORK/state-"* "$WORK"/out-* "$WORK"/.out-*
measure baseline -- bin/baseline -i "$IN" -o "$WORK/out-baseline.jsonl"
PIPE_IN="$IN" PIPE_OUT="$WORK/out-file_map_file.jsonl" \
  measure file_map_file -- bin/pipe run examples/bench/file_map_file.pipe --state-dir "$WORK/state-file"
N="$N" measure gen_map_discard -- bin/pipe run examples/bench/gen_map_discard.pipe --state-dir "$WORK/state-gen"
measure stdin_map_stdout -i "$IN" -o "$WORK/out-stdin_map_stdout.jsonl" -- \
  bin/pipe run examples/bench/stdin_map_stdout.pipe --state-dir "$WORK/state-stdin"

# The pipelines must write what the baseline writes.
want=$(wc -l <"$WORK/out-baseline.jsonl")
for p in file_map_file stdin_map_stdout; do
  got=$(wc -l <"$WORK/out-$p.jsonl" 2>/dev/null || echo 0)
  if [ "$got" != "$want" ] && [ "$(field exit_code "$(cat "$WORK/$p.json")")" = 0 ]; then
    echo "$p wrote $got records, the baseline $want" >&2
    exit 1
  fi
done

base=$(cat "$WORK/baseline.json")
base_rate=$(awk -v n="$N" -v w="$(field wall_s "$base")" 'BEGIN { printf "%.0f", n / w }')
base_cpu=$(field cpu_s "$base")
{
  echo
  echo "## $(date -u '+%Y-%m-%d %H:%M UTC') — $N records"
  echo
  echo "Machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); $(go version | cut -d' ' -f3); commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown); load average before the run: $LOAD."
  echo
  echo "| run | wall s | records/s | CPU s | peak RSS MiB | × baseline (records/s) | × baseline (CPU) |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  for p in baseline file_map_file gen_map_discard stdin_map_stdout; do
    j=$(cat "$WORK/$p.json")
    code=$(field exit_code "$j")
    if [ "$code" != 0 ]; then
      echo "| $p | failed (exit $code) | | | | | |"
      continue
    fi
    wall=$(field wall_s "$j")
    awk -v p="$p" -v n="$N" -v w="$wall" -v c="$(field cpu_s "$j")" -v r="$(field max_rss_kib "$j")" -v b="$base_rate" -v bc="$base_cpu" \
      'BEGIN { rate = n / w; printf "| %s | %.2f | %.0f | %.2f | %.1f | %.2f | %.2f |\n", p, w, rate, c, r / 1024, rate / b, bc / c }'
  done
  echo
  echo "records/s counts input records (all $N, before the filter) per wall-clock second; CPU s is user + system time; × baseline (CPU) is the baseline's CPU seconds over the run's, which other load on the machine disturbs least. Command: \`bench/run.sh\`."
} >>"$RESULTS"
tail -n 12 "$RESULTS"
