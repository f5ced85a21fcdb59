#!/usr/bin/env bash
# Coordinator CPU and RSS with 2 workers idle, then recording 2 classes.
# Usage: scripts/coordinator-footprint.sh [BIN_DIR]   (default target/release)
# Prints one line per phase; each phase samples /proc for 20 s.
set -euo pipefail
bin=${1:-target/release}
dir=$(mktemp -d /tmp/rf-footprint.XXXX)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
"$bin/recfleet-agent" dev --dir "$dir/dev" --workers 2 --context "$dir/context.toml" >"$dir/dev.out" 2>&1 &
for _ in $(seq 60); do grep -q "fleet up" "$dir/dev.out" 2>/dev/null && break; sleep 0.5; done
coord=$(pgrep -f "recfleet-agent coordinator --listen .* --data-dir $dir/dev/coordinator")
page=$(sed -n 's/^demo class page: //p' "$dir/dev.out")
sample() { # pid seconds -> "cpu% rss_mb"
  local t0 t1 r
  t0=$(awk '{print $14+$15}' "/proc/$1/stat"); sleep "$2"; t1=$(awk '{print $14+$15}' "/proc/$1/stat")
  r=$(awk '/VmRSS/ {print $2}' "/proc/$1/status")
  awk -v d=$((t1 - t0)) -v s="$2" -v r="$r" 'BEGIN { printf "%.2f%% of a core, RSS %.1f MiB\n", d / s, r / 1024 }'
}
echo "idle, 2 workers:      $(sample "$coord" 20)"
export RECFLEET_CONTEXT=$dir/context.toml
for i in 1 2; do "$bin/recfleet" record start "$page" --id "fp-$i" --max-duration 120s >/dev/null; sleep 1; done
sleep 8
echo "2 recordings running: $(sample "$coord" 20)"
