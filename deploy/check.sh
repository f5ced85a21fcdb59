#!/usr/bin/env bash
# make deploy-check: validates deploy/ offline, in a few seconds.
#   1. Dockerfile: hadolint (deploy/.hadolint.yaml).
#   2. Kubernetes: `kubectl kustomize` renders the base and every overlay;
#      kubernetes-validate checks the output and the examples against the
#      schemas of Kubernetes $K8S_VERSIONS (shipped in the package, strict:
#      unknown fields fail). Custom resources (KEDA) have no schema offline:
#      they get a warning there and structural checks in step 4.
#   3. make-secrets.sh, when a recfleet-certs binary is at hand: issues real
#      certificates from a throwaway CA; the Secrets are validated too.
#   4. check_manifests.py: that the pieces fit each other and the daemon.
#   5. systemd: `systemd-analyze verify` of both units (with ExecStart's
#      binary replaced by a stub, since verify insists that it exists), which
#      fails on any message about our units; `systemd-analyze security
#      --offline` keeps their exposure scores under today's plus a margin.
# Tools come from the project's .venv (make deploy-tools) and the systemd
# package; a missing systemd-analyze skips step 5 with a note.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
K8S_VERSIONS=${K8S_VERSIONS:-"1.30.0 1.37.0"}
# systemd-analyze security exposure, x10: today 1.5 and 4.2.
EXPOSURE_MAX_COORDINATOR=${EXPOSURE_MAX_COORDINATOR:-20}
EXPOSURE_MAX_WORKER=${EXPOSURE_MAX_WORKER:-45}
CERTS_BIN=${DEPLOY_CHECK_CERTS:-}
if [ -z "$CERTS_BIN" ]; then
	for c in target/debug/recfleet-certs target/release/recfleet-certs; do
		[ -x "$c" ] && { CERTS_BIN=$c; break; }
	done
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
step() { printf 'deploy-check: %s\n' "$*"; }

step "hadolint deploy/Dockerfile"
"$VENV/bin/hadolint" --no-color --config deploy/.hadolint.yaml deploy/Dockerfile

build="$work/build"
mkdir -p "$build"
"$VENV/bin/kubectl" kustomize deploy/k8s/base >"$build/base.yaml"
for o in deploy/k8s/overlays/*/; do
	"$VENV/bin/kubectl" kustomize "$o" >"$build/overlay-$(basename "$o").yaml"
done
files=("$build"/*.yaml deploy/k8s/examples/coordinator-external-service.yaml
	deploy/k8s/examples/keda-scaledobject.yaml)

if [ -n "$CERTS_BIN" ]; then
	"$CERTS_BIN" init --dir "$work/ca" >/dev/null
	deploy/k8s/make-secrets.sh --ca-dir "$work/ca" --workers 10 --certs "$CERTS_BIN" \
		--san 198.51.100.7 >"$build/secrets.yaml" 2>"$work/make-secrets.log" ||
		{ cat "$work/make-secrets.log" >&2; exit 1; }
	files+=("$build/secrets.yaml")
	step "make-secrets.sh: issued with $CERTS_BIN"
else
	step "make-secrets.sh: skipped (no recfleet-certs binary; set DEPLOY_CHECK_CERTS or build it)"
fi

for v in $K8S_VERSIONS; do
	step "kubernetes-validate -k $v --strict: base, overlays ($(ls deploy/k8s/overlays | tr '\n' ' ')), examples"
	out=$("$VENV/bin/kubernetes-validate" -k "$v" --strict --quiet "${files[@]}" 2>&1) || {
		printf '%s\n' "$out" >&2
		exit 1
	}
	# The only warning allowed: no schema for the KEDA custom resource.
	if printf '%s\n' "$out" | grep -v "Couldn't find schema for kind ScaledObject with api version keda.sh/" | grep -q .; then
		printf '%s\n' "$out" >&2
		exit 1
	fi
done

"$VENV/bin/python" deploy/check_manifests.py . "$build"

if ! command -v systemd-analyze >/dev/null; then
	step "systemd units: SKIPPED, no systemd-analyze (install the systemd package)"
	exit 0
fi
units="$work/units"
mkdir -p "$units"
printf '#!/bin/sh\nexit 0\n' >"$units/recfleet-agent"
chmod +x "$units/recfleet-agent"
for u in deploy/systemd/*.service; do
	sed "s|/usr/local/bin/recfleet-agent|$units/recfleet-agent|" "$u" >"$units/$(basename "$u")"
done
step "systemd-analyze verify deploy/systemd/*.service"
# verify exits 0 on unknown or invalid settings (it only logs them), and in a
# container without a running systemd it may log about units of the host:
# fail on every line that names one of ours.
out=$(systemd-analyze verify "$units"/*.service 2>&1) || {
	printf '%s\n' "$out" >&2
	exit 1
}
if printf '%s\n' "$out" | grep -F "$units/"; then
	exit 1
fi
[ -z "$out" ] || printf 'deploy-check: (not about our units) %s\n' "$out"
for u in "$units"/*.service; do
	score=$(systemd-analyze security --offline=yes --no-pager "$u" 2>&1 |
		sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
	case "$u" in *worker*) max=$EXPOSURE_MAX_WORKER ;; *) max=$EXPOSURE_MAX_COORDINATOR ;; esac
	step "systemd-analyze security $(basename "$u"): exposure $score (fail above $((max / 10)).$((max % 10)))"
	if [ -z "$score" ] || [ "${score/./}" -gt "$max" ]; then
		systemd-analyze security --offline=yes --no-pager "$u" >&2 || true
		exit 1
	fi
done
step "ok"
