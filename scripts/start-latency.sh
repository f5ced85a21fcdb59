#!/usr/bin/env bash
# Request to first captured frame through a local fleet (release build),
# N recordings one after another; prints each and the median.
# Usage: scripts/start-latency.sh [N] [BIN_DIR]
set -euo pipefail
n=${1:-10}
bin=${2:-target/release}
dir=$(mktemp -d /tmp/rf-start.XXXX)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
"$bin/recfleet-agent" dev --dir "$dir/dev" --workers 2 --context "$dir/context.toml" >"$dir/dev.out" 2>&1 &
for _ in $(seq 60); do grep -q "fleet up" "$dir/dev.out" 2>/dev/null && break; sleep 0.5; done
page=$(sed -n 's/^demo class page: //p' "$dir/dev.out")
export RECFLEET_CONTEXT=$dir/context.toml
for i in $(seq "$n"); do
  "$bin/recfleet" record start "$page" --id "lat-$i" --max-duration 3s --wait >/dev/null
  "$bin/recfleet" record show "lat-$i" -o json |
    python3 -c 'import json,sys; i=json.load(sys.stdin)["info"]; print(i["started_at"]-i["created_at"])'
done | tee "$dir/ms" | sed 's/$/ ms/'
sort -n "$dir/ms" | awk '{a[NR]=$1} END {printf "median %d ms, min %d, max %d (n=%d)\n", (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2), a[1], a[NR], NR}'
