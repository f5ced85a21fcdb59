#!/usr/bin/env bash
# Issues the coordinator's and every worker's certificate from the fleet CA
# and prints them as the two Kubernetes Secrets the base expects:
#   recfleet-coordinator-tls  ca.pem, coordinator.pem, coordinator-key.pem
#   recfleet-worker-tls       ca.pem, agent-<prefix>-<i>.pem, agent-<prefix>-<i>-key.pem
#                             for i in 0..N-1 (N >= the autoscaler's maximum)
# The keys exist only in the output (a temporary directory is removed), so
# pipe it straight to kubectl:
#   deploy/k8s/make-secrets.sh --ca-dir ~/recfleet-ca --workers 10 | kubectl apply -f -
# Run it again to rotate (new keys and certificates), then restart the pods
# (docs/deploy.md, "Rotation").
set -euo pipefail

usage() {
	cat <<'USAGE'
usage: make-secrets.sh --ca-dir DIR --workers N [options]
  --ca-dir DIR        directory with ca.pem and ca-key.pem (recfleet-certs init --dir DIR)
  --workers N         worker certificates to issue: <prefix>-0 .. <prefix>-(N-1)
  --namespace NS      namespace of the Secrets and of the coordinator Service [recfleet]
  --worker-prefix P   the worker StatefulSet's name [recfleet-worker]
  --service NAME      the coordinator Service's name [recfleet-coordinator]
  --san NAME_OR_IP    another name on the coordinator certificate (repeatable),
                      e.g. the external load balancer's
  --ca-bundle FILE    ca.pem to ship instead of DIR/ca.pem (CA rotation: old + new CA)
  --days N            validity in days [365]
  --certs BIN         the recfleet-certs binary [recfleet-certs from PATH]
USAGE
}

ca_dir="" workers="" ns="recfleet" prefix="recfleet-worker" service="recfleet-coordinator"
days=365 certs="recfleet-certs" ca_bundle="" extra_sans=()
while [ $# -gt 0 ]; do
	case "$1" in
	--ca-dir) ca_dir="$2"; shift 2 ;;
	--workers) workers="$2"; shift 2 ;;
	--namespace) ns="$2"; shift 2 ;;
	--worker-prefix) prefix="$2"; shift 2 ;;
	--service) service="$2"; shift 2 ;;
	--san) extra_sans+=("$2"); shift 2 ;;
	--ca-bundle) ca_bundle="$2"; shift 2 ;;
	--days) days="$2"; shift 2 ;;
	--certs) certs="$2"; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "make-secrets.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
	esac
done
if [ -z "$ca_dir" ] || [ -z "$workers" ]; then usage >&2; exit 2; fi
case "$workers" in '' | *[!0-9]*) echo "make-secrets.sh: --workers takes a number" >&2; exit 2 ;; esac
for f in ca.pem ca-key.pem; do
	[ -r "$ca_dir/$f" ] || { echo "make-secrets.sh: no $ca_dir/$f (recfleet-certs init --dir $ca_dir)" >&2; exit 1; }
done
[ -n "$ca_bundle" ] || ca_bundle="$ca_dir/ca.pem"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
umask 077

sans=(--san "$service" --san "$service.$ns" --san "$service.$ns.svc" --san "$service.$ns.svc.cluster.local")
for s in "${extra_sans[@]+"${extra_sans[@]}"}"; do sans+=(--san "$s"); done
"$certs" issue --dir "$ca_dir" --out-dir "$tmp" --role coordinator --name coordinator \
	--days "$days" "${sans[@]}" >&2
for ((i = 0; i < workers; i++)); do
	"$certs" issue --dir "$ca_dir" --out-dir "$tmp" --role agent --name "$prefix-$i" \
		--days "$days" >&2
done

# One `key: base64` line of a Secret's data.
entry() { printf '  %s: %s\n' "$1" "$(base64 -w0 <"$2")"; }
secret_head() {
	cat <<YAML
---
apiVersion: v1
kind: Secret
type: Opaque
metadata:
  name: $1
  namespace: $ns
  labels:
    app.kubernetes.io/name: recfleet
    app.kubernetes.io/component: $2
    app.kubernetes.io/part-of: recfleet
data:
YAML
}

secret_head recfleet-coordinator-tls coordinator
entry ca.pem "$ca_bundle"
entry coordinator.pem "$tmp/coordinator-coordinator.pem"
entry coordinator-key.pem "$tmp/coordinator-coordinator-key.pem"

secret_head recfleet-worker-tls worker
entry ca.pem "$ca_bundle"
for ((i = 0; i < workers; i++)); do
	entry "agent-$prefix-$i.pem" "$tmp/agent-$prefix-$i.pem"
	entry "agent-$prefix-$i-key.pem" "$tmp/agent-$prefix-$i-key.pem"
done
