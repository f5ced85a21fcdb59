#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ for RUNS executions (default 10 million),
# two at a time, without sanitizers on stable (cargo fuzz -s none), from
# the committed seed corpora (fuzz/seeds/<target>.tar.gz); then minimizes
# each corpus, packs it back into its seed file, and prints one line per
# target: executions, seconds, corpus files and bytes, crashes (kept in
# fuzz/artifacts/<target>/). Needs `cargo install cargo-fuzz`.
# Usage: scripts/fuzz.sh [RUNS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-10000000}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build -s none -O >/dev/null
out=target/fuzz-logs
mkdir -p "$out" fuzz/seeds
one() {
  local t=$1 start end status
  mkdir -p "fuzz/corpus/$t"
  if [ -f "fuzz/seeds/$t.tar.gz" ] && [ -z "$(ls -A "fuzz/corpus/$t")" ]; then
    tar -xzf "fuzz/seeds/$t.tar.gz" -C "fuzz/corpus/$t"
  fi
  start=$(date +%s)
  if cargo fuzz run -s none -O "$t" -- -runs="$runs" -max_len=4096 -print_final_stats=1 \
      >"$out/$t.log" 2>&1; then status=ok; else status=CRASH; fi
  end=$(date +%s)
  cargo fuzz cmin -s none -O "$t" >/dev/null 2>&1 || true
  tar -czf "fuzz/seeds/$t.tar.gz" -C "fuzz/corpus/$t" --sort=name --mtime=@0 --owner=0 --group=0 .
  local execs files bytes
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out/$t.log" | grep -o '[0-9]*$' || echo 0)
  files=$(find "fuzz/corpus/$t" -type f | wc -l)
  bytes=$(du -sb "fuzz/corpus/$t" | cut -f1)
  echo "$t: $status, $execs executions in $((end - start)) s, corpus $files files ($bytes bytes)"
}
i=0
for t in "${targets[@]}"; do
  one "$t" &
  i=$((i + 1))
  if [ $((i % 2)) -eq 0 ]; then wait; fi
done
wait
