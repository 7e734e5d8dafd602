#!/usr/bin/env bash
# Measures what the HTTP server and its metrics cost: runs
# examples/bench/gen_map_discard.pipe on N records (default 10,000,000)
# ROUNDS times (default 5) without --http, and with --http while a scraper
# reads /metrics and /status every half second, alternating the two; with
# BASE=REV also a binary built from revision REV (before the per-task
# counters existed). Prints CPU seconds per run and the medians' CPU per
# record; bench/RESULTS-http.md holds runs written down.
#
#   bench/http_overhead.sh
#   N=20000000 ROUNDS=7 BASE=eec4c69 bench/http_overhead.sh
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-10000000}
ROUNDS=${ROUNDS:-5}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p bin
go build -o bin/pipe ./cmd/pipe
go build -o bin/measure ./bench/cmd/measure
variants="off on"
if [ -n "${BASE:-}" ]; then
  git archive "$BASE" | tar -x -C "$WORK" --one-top-level=base
  (cd "$WORK/base" && go build -o "$WORK/pipe-base" ./cmd/pipe)
  variants="base off on"
fi

field() { printf '%s' "$2" | sed -n "s/.*\"$1\":\([-0-9.e+]*\).*/\1/p"; }

# run VARIANT: one measured run; prints its CPU seconds.
run() {
  local v=$1 bin=bin/pipe args=()
  [ "$v" = base ] && bin="$WORK/pipe-base"
  [ "$v" = on ] && args=(--http 127.0.0.1:0)
  rm -rf "$WORK/state"
  N="$N" bin/measure -- "$bin" run -q "${args[@]}" --state-dir "$WORK/state" examples/bench/gen_map_discard.pipe \
    >"$WORK/m.json" 2>"$WORK/log" &
  local pid=$!
  if [ "$v" = on ]; then
    local url=""
    while kill -0 "$pid" 2>/dev/null; do
      [ -z "$url" ] && url=$(sed -n 's/.*url=\(http[^ ]*\).*/\1/p' "$WORK/log" | head -1)
      if [ -n "$url" ]; then
        curl -s -o /dev/null "$url/metrics" || true
        curl -s -o /dev/null "$url/status" || true
      fi
      sleep 0.5
    done
    grep -q 'url=http' "$WORK/log" || { echo "no url in the log of the run with --http" >&2; cat "$WORK/log" >&2; exit 1; }
  fi
  wait "$pid" || { echo "run $v failed: $(cat "$WORK/m.json") $(tail -3 "$WORK/log")" >&2; exit 1; }
  field cpu_s "$(cat "$WORK/m.json")"
}

declare -A cpus
for r in $(seq 1 "$ROUNDS"); do
  for v in $variants; do
    c=$(run "$v")
    cpus[$v]="${cpus[$v]:-} $c"
    echo "round $r $v: $c CPU s" >&2
  done
done
median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
echo "N=$N ROUNDS=$ROUNDS, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
off=$(echo "${cpus[off]}" | median)
for v in $variants; do
  m=$(echo "${cpus[$v]}" | median)
  awk -v v="$v" -v m="$m" -v n="$N" -v off="$off" -v all="${cpus[$v]}" \
    'BEGIN { printf "%-4s median %.3f CPU s, %.1f ns/record, %+.1f%% vs off (runs:%s)\n", v, m, m / n * 1e9, (m / off - 1) * 100, all }'
done
