#!/usr/bin/env bash
# Measures how the CPU per record and the peak RSS of the benchmark
# pipelines of examples/bench grow with the input size (10^5, 10^6, 10^7
# records) and the record width (narrow: the 6 fields of the benchmark
# shape; wide: 30 flat fields; nested: about 2 KiB with a nested object
# and arrays, see bench/gen), and appends the table to bench/RESULTS.md.
#
# CPU is user + system seconds of the whole run (start-up included), per
# record in µs; "marginal" is the CPU the extra records of a size cost
# over the size before it, per extra record, which start-up does not
# touch: flat per-record cost shows as equal marginal figures. Each cell
# is the median of R runs (default 1). A run whose input would exceed
# MAX_BYTES (default 6 GB) is skipped and said so.
#
# gen_map_discard has no input file: its width is the number of fields
# of its generate template (6, or 30 with 24 added generators); generate
# makes flat records only, so it has no nested row.
#
#   bench/scale.sh                          # all sizes and shapes
#   SIZES="100000 1000000" R=3 bench/scale.sh
#   SHAPES=narrow PIPELINES=file_map_file bench/scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=${SIZES:-"100000 1000000 10000000"}
SHAPES=${SHAPES:-"narrow wide nested"}
PIPELINES=${PIPELINES:-"file_map_file stdin_map_stdout gen_map_discard"}
R=${R:-1}
MAX_BYTES=${MAX_BYTES:-6000000000}
WORK=${BENCH_DIR:-$(mktemp -d)}
RESULTS=${RESULTS:-bench/RESULTS.md}
mkdir -p bin "$WORK"
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)

go build -o bin/pipe ./cmd/pipe
go build -o bin/geninput ./bench/cmd/geninput
go build -o bin/measure ./bench/cmd/measure

field() { # field NAME JSON
  printf '%s' "$2" | sed -n "s/.*\"$1\":\([-0-9.e+]*\).*/\1/p"
}

# The generate pipeline with 24 more fields: 30 in all.
wide_gen() {
  sed -e '/^test "/,$d' examples/bench/gen_map_discard.pipe |
    awk '{ print } /ts *= timestamp/ {
      for (f = 7; f <= 30; f++) {
        if (f % 4 == 0) printf "    f%d = random_int(0, 100000)\n", f
        else if (f % 4 == 1) printf "    f%d = format(\"s%%d\", random_int(0, 100000))\n", f
        else if (f % 4 == 2) printf "    f%d = random_float(0.0, 1000.0)\n", f
        else printf "    f%d = random_bool()\n", f
      }
    }'
}
wide_gen >"$WORK/gen_map_discard_wide.pipe"

bytes_per_record() { # bytes_per_record SHAPE
  bin/geninput -n 1000 --shape "$1" | wc -c | awk '{ printf "%d", $1 / 1000 }'
}

kept() { # kept N: how many of N records pass the filter (amount > 50), the same in every shape
  [ -s "$WORK/kept-$1" ] ||
    bin/geninput -n "$1" | cut -d, -f3 | cut -d: -f2 | awk '$1 > 50 { k++ } END { print k + 0 }' >"$WORK/kept-$1"
  cat "$WORK/kept-$1"
}

run_one() { # run_one PIPELINE SHAPE N: prints "cpu_s max_rss_kib wall_s" (medians) or "skip"/"fail"
  local p=$1 shape=$2 n=$3 in="$WORK/in-$2-$3.jsonl" out="$WORK/out.jsonl" runs="$WORK/runs"
  if [ "$p" != gen_map_discard ]; then
    if [ $(($(bytes_per_record "$shape") * n)) -gt "$MAX_BYTES" ]; then
      echo skip
      return
    fi
    [ -s "$in" ] || bin/geninput -n "$n" --shape "$shape" -o "$in"
  fi
  : >"$runs"
  for _ in $(seq 1 "$R"); do
    rm -rf "$WORK/state" "$out" "$WORK"/.out.jsonl*
    echo "$p $shape $n" >&2
    case $p in
    file_map_file)
      PIPE_IN="$in" PIPE_OUT="$out" bin/measure -- bin/pipe run examples/bench/file_map_file.pipe --state-dir "$WORK/state" >>"$runs" || true ;;
    stdin_map_stdout)
      bin/measure -i "$in" -o "$out" -- bin/pipe run examples/bench/stdin_map_stdout.pipe --state-dir "$WORK/state" >>"$runs" || true ;;
    gen_map_discard)
      local pf=examples/bench/gen_map_discard.pipe
      [ "$shape" = wide ] && pf="$WORK/gen_map_discard_wide.pipe"
      N="$n" bin/measure -- bin/pipe run "$pf" --state-dir "$WORK/state" >>"$runs" || true ;;
    esac
    echo >>"$runs"
    if [ "$p" != gen_map_discard ]; then
      # Every kept record is written: as many lines as the filter passes.
      local want got
      want=$(kept "$n")
      got=$(wc -l <"$out")
      [ "$want" = "$got" ] || { echo "$p $shape $n: $got lines written, $want expected" >&2; echo fail; return; }
    fi
  done
  grep -q '"exit_code":0' "$runs" || { echo fail; return; }
  local m
  for f in cpu_s max_rss_kib wall_s; do
    m=$(grep '"exit_code":0' "$runs" | sed -n "s/.*\"$f\":\([-0-9.e+]*\).*/\1/p" | sort -g |
      awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
    printf '%s ' "$m"
  done
  echo
}

ROWS=$WORK/rows
: >"$ROWS"
for p in $PIPELINES; do
  for shape in $SHAPES; do
    [ "$p" = gen_map_discard ] && [ "$shape" = nested ] && continue
    prev_n="" prev_cpu=""
    for n in $SIZES; do
      res=$(run_one "$p" "$shape" "$n")
      case $res in
      skip) echo "| $p | $shape | $n | skipped: input over $MAX_BYTES bytes | | | | |" >>"$ROWS" ;;
      fail) echo "| $p | $shape | $n | failed | | | | |" >>"$ROWS" ;;
      *)
        read -r cpu rss wall <<<"$res"
        awk -v p="$p" -v s="$shape" -v n="$n" -v c="$cpu" -v r="$rss" -v w="$wall" -v pn="$prev_n" -v pc="$prev_cpu" 'BEGIN {
          marg = (pn == "") ? "" : sprintf("%.3f", (c - pc) / (n - pn) * 1e6)
          printf "| %s | %s | %d | %.2f | %.2f | %.3f | %s | %.1f |\n", p, s, n, w, c, c / n * 1e6, marg, r / 1024 }' >>"$ROWS"
        prev_n=$n prev_cpu=$cpu ;;
      esac
    done
  done
done

{
  echo
  echo "## $(date -u '+%Y-%m-%d %H:%M UTC') — growth with input size and record width"
  echo
  echo "Machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); $(go version | cut -d' ' -f3); commit $COMMIT; load average before the run: $LOAD, after: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "Widths: narrow $(bytes_per_record narrow) bytes a line (6 fields), wide $(bytes_per_record wide) (30 fields), nested $(bytes_per_record nested) (6 fields and a nested object of arrays). CPU is user + system seconds of the whole run; µs/record divides it by the records read (before the filter); marginal is the CPU of the records a size adds over the size above it, per added record (start-up excluded). Medians of $R run(s). Command: \`SIZES=\"$SIZES\" SHAPES=\"$SHAPES\" R=$R bench/scale.sh\`."
  echo
  echo "| pipeline | shape | records | wall s | CPU s | CPU µs/record | marginal µs/record | peak RSS MiB |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|"
  cat "$ROWS"
} >>"$RESULTS"
tail -n "$(($(wc -l <"$ROWS") + 7))" "$RESULTS"
