#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ two at a time, without sanitizers on
# stable (cargo fuzz -s none), from the committed seed corpora
# (fuzz/seeds/<target>.tar.gz), and prints one line per target: executions,
# seconds, corpus files and bytes, crashes (kept in fuzz/artifacts/<target>/).
#
#   scripts/fuzz.sh [RUNS] [TARGET...]       RUNS executions each (default
#       10 million); then minimizes each corpus and packs it back into its
#       seed file (commit them).
#   scripts/fuzz.sh --ci SECONDS [TARGET...] SECONDS each, seeds untouched;
#       exits 1 if any target crashed (what CI runs).
#
# Needs `cargo install cargo-fuzz`.
set -euo pipefail
cd "$(dirname "$0")/.."
ci=false
if [ "${1:-}" = "--ci" ]; then
  ci=true
  shift
  limit=("-max_total_time=${1:?--ci needs SECONDS}")
else
  limit=("-runs=${1:-10000000}")
fi
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build -s none -O >/dev/null
out=target/fuzz-logs
mkdir -p "$out" fuzz/seeds
one() {
  local t=$1 start end status corpus
  corpus="fuzz/corpus/$t"
  if $ci; then
    # A corpus of its own, from the seeds: CI never writes into fuzz/.
    corpus="$out/corpus-$t"
    rm -rf "$corpus"
  fi
  mkdir -p "$corpus"
  if [ -f "fuzz/seeds/$t.tar.gz" ] && [ -z "$(ls -A "$corpus")" ]; then
    tar -xzf "fuzz/seeds/$t.tar.gz" -C "$corpus"
  fi
  start=$(date +%s)
  if cargo fuzz run -s none -O "$t" "$corpus" -- "${limit[@]}" -max_len=4096 -print_final_stats=1 \
      >"$out/$t.log" 2>&1; then status=ok; else status=CRASH; fi
  end=$(date +%s)
  if ! $ci; then
    cargo fuzz cmin -s none -O "$t" >/dev/null 2>&1 || true
    tar -czf "fuzz/seeds/$t.tar.gz" -C "$corpus" --sort=name --mtime=@0 --owner=0 --group=0 .
  fi
  local execs files bytes
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out/$t.log" | grep -o '[0-9]*$' || echo 0)
  files=$(find "$corpus" -type f | wc -l)
  bytes=$(du -sb "$corpus" | cut -f1)
  echo "$t: $status, $execs executions in $((end - start)) s, corpus $files files ($bytes bytes)"
  if [ "$status" = CRASH ]; then
    echo "$t crashed: see $out/$t.log and fuzz/artifacts/$t/" >&2
    tail -n 30 "$out/$t.log" >&2
    return 1
  fi
}
failed=0
pids=()
for t in "${targets[@]}"; do
  one "$t" &
  pids+=($!)
  if [ ${#pids[@]} -eq 2 ]; then
    for p in "${pids[@]}"; do wait "$p" || failed=1; done
    pids=()
  fi
done
for p in "${pids[@]}"; do wait "$p" || failed=1; done
exit $failed
