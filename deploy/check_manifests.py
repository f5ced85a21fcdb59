#!/usr/bin/env python3
"""Consistency checks of recfleet's deployment files that a schema cannot see.

deploy/check.sh renders the kustomizations and validates them against the
Kubernetes schemas first; this script then checks that the pieces fit each
other and the daemon's interface:

- every manifest in a kustomization directory is listed in it, and every
  listed path exists;
- Services select pods that have the named target ports (same protocol);
  StatefulSets name an existing governing Service; the PDB selects workers;
- probes: /healthz (startup, liveness) and /readyz (readiness) on the port
  that RECFLEET_METRICS_ADDR opens;
- the worker's grace period covers RECFLEET_DRAIN_GRACE_SECS; /dev/shm is a
  memory emptyDir; every volume mount has a volume;
- certificate paths in the env resolve to keys of the Secrets that
  make-secrets.sh writes, for every replica the autoscalers may create;
- the coordinator address is the Service's ClusterIP variable, the server
  name one of the names make-secrets.sh puts on the certificate;
- the autoscaling examples target the worker StatefulSet, use one worker's
  capacity as the per-replica target, and name the metric the adapter serves;
- recordings go to object storage: no PersistentVolumeClaim is mounted
  (no shared volume), the coordinator's RECFLEET_OUTPUT is s3://, both
  read the S3 Secret, and a worker's RECFLEET_OUT_DIR (its upload buffer)
  is a disk emptyDir at least twice RECFLEET_UPLOAD_BUFFER_BYTES;
- only known RECFLEET_* and AWS_* variables and recfleet_* metric names
  appear in deploy/ and docs/deploy.md (a typo there fails silently in
  production);
- systemd units: Type=notify, KillMode=control-group, TimeoutStopSec above
  the worker's drain grace, EnvironmentFile, and the env examples use known
  variables only.

Usage: check_manifests.py REPO_ROOT BUILD_DIR
BUILD_DIR holds base.yaml, overlay-<name>.yaml and, when the certificate tool
was available, secrets.yaml (written by deploy/check.sh).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

# The daemon's interface (flags' variables), as agreed for issue 7.
KNOWN_ENV = {
    "RECFLEET_CONFIG", "RECFLEET_LISTEN", "RECFLEET_DATA_DIR", "RECFLEET_CA",
    "RECFLEET_CERT", "RECFLEET_KEY", "RECFLEET_MANIFEST_ROOT",
    "RECFLEET_ALLOWED_HOSTS", "RECFLEET_IDLE_TIMEOUT_MS", "RECFLEET_METRICS_ADDR",
    # Issue 16: internal destinations admitted on purpose.
    "RECFLEET_ALLOW_INTERNAL",
    "RECFLEET_RETENTION_SECS",
    "RECFLEET_LOG_FORMAT", "RECFLEET_LOG", "RECFLEET_COORDINATOR",
    "RECFLEET_SERVER_NAME", "RECFLEET_CAPACITY", "RECFLEET_OUT_DIR",
    "RECFLEET_RUNTIME_DIR", "RECFLEET_DRAIN_GRACE_SECS",
    "RECFLEET_WEBHOOK_URLS", "RECFLEET_WEBHOOK_SECRET", "RECFLEET_WEBHOOK_SECRET_FILE",
    "RECFLEET_WEBHOOK_RETRY_SECS", "RECFLEET_WEBHOOK_BACKOFF_BASE_MS",
    # Issue 12: recordings in object storage.
    "RECFLEET_OUTPUT", "RECFLEET_STITCH", "RECFLEET_UPLOAD_BUFFER_BYTES",
    "RECFLEET_ALLOWED_OUTPUTS", "RECFLEET_UPLOAD_RETRY_SECS",
    # Issue 13: several coordinators on PostgreSQL.
    "RECFLEET_STORE", "RECFLEET_STORE_CA", "RECFLEET_NAME", "RECFLEET_ADVERTISE",
    "RECFLEET_LEASE_TTL_MS", "RECFLEET_LEASE_RENEW_MS",
    # Issue 14: media health defaults.
    "RECFLEET_HEALTH_SILENT_SECS", "RECFLEET_HEALTH_FROZEN_SECS",
    "RECFLEET_HEALTH_BLACK_SECS", "RECFLEET_HEALTH_RESTART_CRASHED",
    "RECFLEET_HEALTH_RESTART_FROZEN_SECS", "RECFLEET_HEALTH_RESTART_BLACK_SECS",
    "RECFLEET_CONTEXT_NAME",
    # Issue 15: more Chromium flags on a worker.
    "RECFLEET_CHROMIUM_ARGS",
    # Issue 16: per-slot limits.
    "RECFLEET_SLOT_MEMORY_MIB", "RECFLEET_SLOT_CPU_MILLICORES", "RECFLEET_SLOT_PIDS_MAX",
    # Issue 17: the warm pool, admission by measured cost.
    "RECFLEET_READY_SLOTS", "RECFLEET_CPU_CAPACITY_MILLICORES", "RECFLEET_ADMISSION",
    "RECFLEET_ADMISSION_ESTIMATE_MILLICORES", "RECFLEET_ADMISSION_TARGET_PERCENT",
    # Redundancy 2: the worker's host.
    "RECFLEET_HOST",
    # Not the daemon's: the systemd unit's word list for flags without a
    # variable, the console's context file, Kubernetes' service link.
    "RECFLEET_WORKER_ARGS", "RECFLEET_CONTEXT", "RECFLEET_COORDINATOR_SERVICE_HOST",
}
# The AWS variables the S3 client reads (agent/src/output/destination.rs and
# object_store's AmazonS3Builder::from_env), as used in deploy/ and the docs.
KNOWN_AWS_ENV = {
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_STS", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
    "AWS_ALLOW_HTTP",
}
# The metrics the daemon serves (issue 7), and the one the adapter derives.
KNOWN_METRICS = {
    "recfleet_workers", "recfleet_recordings", "recfleet_recordings_pending",
    "recfleet_capacity_units", "recfleet_capacity_free_units",
    "recfleet_placement_latency_seconds", "recfleet_failovers_total",
    "recfleet_reassigns_total", "recfleet_drains_total",
    "recfleet_worker_slots_used", "recfleet_segment_restarts_total",
    "recfleet_recording_start_latency_seconds", "recfleet_bytes_written_total",
    "recfleet_capacity_units_demanded",
    "recfleet_store_commit_seconds", "recfleet_store_errors_total",
    "recfleet_store_unavailable", "recfleet_turn_inputs", "recfleet_queue_depth",
    "recfleet_telemetry_dropped_total",
    "recfleet_webhook_deliveries_total", "recfleet_webhook_pending",
    # Issue 12 (coordinator): uploads behind, workers' buffers.
    "recfleet_upload_lag_seconds", "recfleet_worker_upload_buffer_bytes",
    "recfleet_worker_upload_buffer_full",
}
HISTOGRAMS = {"recfleet_placement_latency_seconds", "recfleet_recording_start_latency_seconds",
              "recfleet_store_commit_seconds", "recfleet_turn_inputs"}
# Slack between the drain grace and the kill: the slots' own stop.
STOP_MARGIN_SECS = 15

errors: list[str] = []


def fail(where: str, msg: str) -> None:
    errors.append(f"{where}: {msg}")


def load_all(path: Path) -> list[dict]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d]


def index(docs: list[dict]) -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", []) if "name" in e}


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def workloads(objs: dict) -> list[dict]:
    return [o for (k, _), o in objs.items() if k in ("StatefulSet", "Deployment")]


# ---- kustomization directories --------------------------------------------


def check_kustomizations(k8s: Path) -> None:
    for kfile in sorted(k8s.rglob("kustomization.yaml")):
        d = kfile.parent
        k = yaml.safe_load(kfile.read_text())
        listed = set()
        for r in k.get("resources", []):
            p = (d / r).resolve()
            if not p.exists():
                fail(str(kfile), f"resource {r} does not exist")
            listed.add(p)
        for p in k.get("patches", []):
            if "path" in p:
                pp = (d / p["path"]).resolve()
                if not pp.exists():
                    fail(str(kfile), f"patch {p['path']} does not exist")
                listed.add(pp)
        for f in sorted(d.glob("*.yaml")):
            if f.name != "kustomization.yaml" and f.resolve() not in listed:
                fail(str(kfile), f"{f.name} is in the directory but not in the kustomization")


# ---- a rendered kustomization -----------------------------------------------


def check_rendered(name: str, docs: list[dict], secrets: dict | None) -> None:
    objs = index(docs)
    where = f"kustomize build {name}"
    for (kind, oname), o in objs.items():
        if kind != "Namespace" and o["metadata"].get("namespace") != "recfleet":
            fail(where, f"{kind}/{oname} is not in namespace recfleet")

    pods = {(w["kind"], w["metadata"]["name"]): w["spec"]["template"] for w in workloads(objs)}

    # Services: selectors and target ports.
    for (kind, sname), svc in objs.items():
        if kind != "Service":
            continue
        sel = svc["spec"].get("selector", {})
        matched = [t for t in pods.values() if selects(sel, t["metadata"].get("labels", {}))]
        if not matched:
            fail(where, f"Service/{sname} selects no pod template")
        for port in svc["spec"].get("ports", []):
            tp, proto = port.get("targetPort", port["port"]), port.get("protocol", "TCP")
            for t in matched:
                cports = [p for c in t["spec"]["containers"] for p in c.get("ports", [])]
                if not any((p.get("name") == tp or p["containerPort"] == tp)
                           and p.get("protocol", "TCP") == proto for p in cports):
                    fail(where, f"Service/{sname} port {port.get('name')}: no container port {tp}/{proto}")

    for (kind, wname), w in pods.items():
        sts = objs[(kind, wname)]
        if kind == "StatefulSet":
            gov = objs.get(("Service", sts["spec"].get("serviceName", "")))
            if gov is None:
                fail(where, f"StatefulSet/{wname}: serviceName {sts['spec'].get('serviceName')} is no Service")
            elif gov["spec"].get("clusterIP") != "None":
                fail(where, f"StatefulSet/{wname}: governing Service {gov['metadata']['name']} is not headless")
        check_pod(where, wname, sts, w, objs, secrets)

    # PDB selects the workers, and only them.
    for (kind, pname), pdb in objs.items():
        if kind == "PodDisruptionBudget":
            sel = pdb["spec"]["selector"]["matchLabels"]
            hit = [n for (_, n), t in pods.items() if selects(sel, t["metadata"]["labels"])]
            if hit != ["recfleet-worker"]:
                fail(where, f"PodDisruptionBudget/{pname} selects {hit}, want the workers")

    for (kind, hname), hpa in objs.items():
        if kind == "HorizontalPodAutoscaler":
            check_autoscaler(where, f"HPA/{hname}", hpa["spec"]["scaleTargetRef"], objs,
                             [m["external"]["target"]["averageValue"] for m in hpa["spec"]["metrics"]
                              if m["type"] == "External"],
                             hpa["spec"]["maxReplicas"], secrets)
            for m in hpa["spec"]["metrics"]:
                if m["type"] == "External" and m["external"]["metric"]["name"] not in adapter_metric_names():
                    fail(where, f"HPA/{hname}: metric {m['external']['metric']['name']} is not served by "
                                "examples/prometheus-adapter-rules.yaml")


def check_pod(where: str, wname: str, wl: dict, tmpl: dict, objs: dict, secrets: dict | None) -> None:
    spec = tmpl["spec"]
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    claim_templates = {c["metadata"]["name"] for c in wl["spec"].get("volumeClaimTemplates", [])}
    for c in spec["containers"]:
        cw = f"{where} {wname}/{c['name']}"
        env = env_of(c)
        for n in env:
            if n.startswith("RECFLEET_") and n not in KNOWN_ENV:
                fail(cw, f"unknown variable {n}")
            if n.startswith("AWS_") and n not in KNOWN_AWS_ENV:
                fail(cw, f"unknown variable {n}")
        check_output(cw, wname, c, env, vols)
        for m in c.get("volumeMounts", []):
            if m["name"] not in vols and m["name"] not in claim_templates:
                fail(cw, f"mount {m['name']} has no volume")
        ports = {p.get("name"): p for p in c.get("ports", [])}
        maddr = env.get("RECFLEET_METRICS_ADDR", "")
        mport = ports.get("metrics")
        if not maddr or mport is None or not maddr.endswith(f":{mport['containerPort']}"):
            fail(cw, f"RECFLEET_METRICS_ADDR={maddr!r} does not open the metrics port")
        # Coordinators of several (RECFLEET_STORE): a standby's /readyz is
        # 503 by design, so readiness is /healthz there (overlays/ha says why).
        ready = "/healthz" if "RECFLEET_STORE" in env else "/readyz"
        for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"),
                            ("readinessProbe", ready)):
            hg = c.get(probe, {}).get("httpGet", {})
            if hg.get("path") != path or hg.get("port") != "metrics":
                fail(cw, f"{probe} should GET {path} on port metrics, has {hg}")
        if not c.get("securityContext", {}).get("capabilities", {}).get("drop") == ["ALL"]:
            fail(cw, "capabilities are not all dropped")
        if wname == "recfleet-worker":
            check_worker(cw, spec, c, env, vols, objs, wl, secrets)
        check_tls_paths(cw, wname, c, env, vols, wl, objs, secrets)


def parse_quantity(q: str) -> int:
    """Bytes of a Kubernetes quantity (8Gi, 500M, 1073741824)."""
    q = str(q)
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
             "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    for u, f in units.items():
        if q.endswith(u):
            return int(float(q[: -len(u)]) * f)
    return int(q)


def check_output(cw: str, wname: str, c: dict, env: dict, vols: dict) -> None:
    """Recordings go to object storage (issue 12): no shared volume; the
    coordinator names an s3:// destination, reads S3 settings from the
    Secret the workers read too; a worker's upload buffer is a local
    emptyDir larger than its buffer limit."""
    for m in c.get("volumeMounts", []):
        v = vols.get(m["name"], {})
        if "persistentVolumeClaim" in v:
            fail(cw, f"mount {m['name']} is a shared claim: recordings go to RECFLEET_OUTPUT, not a volume")
    if "RECFLEET_MANIFEST_ROOT" in env:
        fail(cw, "RECFLEET_MANIFEST_ROOT needs a volume every worker shares; set RECFLEET_OUTPUT=s3://...")
    secrets_from = {e.get("secretRef", {}).get("name") for e in c.get("envFrom", [])}
    if "recfleet-s3" not in secrets_from:
        fail(cw, "no envFrom secretRef recfleet-s3 (the S3 credentials and endpoint)")
    if wname == "recfleet-coordinator":
        if not env.get("RECFLEET_OUTPUT", "").startswith("s3://"):
            fail(cw, f"RECFLEET_OUTPUT={env.get('RECFLEET_OUTPUT')!r}: a fleet of pods needs s3://BUCKET/PREFIX")
    if wname == "recfleet-worker":
        out = env.get("RECFLEET_OUT_DIR", "")
        mount = next((m for m in c.get("volumeMounts", []) if m["mountPath"].rstrip("/") == out.rstrip("/")), None)
        ed = vols.get(mount["name"], {}).get("emptyDir") if mount else None
        if ed is None or ed.get("medium") == "Memory":
            fail(cw, f"RECFLEET_OUT_DIR={out!r} is not a disk emptyDir mounted there (the upload buffer)")
            return
        limit = int(env.get("RECFLEET_UPLOAD_BUFFER_BYTES", str(2 << 30)))
        size = parse_quantity(ed.get("sizeLimit", "0"))
        if size < 2 * limit:
            fail(cw, f"upload buffer emptyDir {ed.get('sizeLimit')} is not at least twice "
                     f"RECFLEET_UPLOAD_BUFFER_BYTES={limit}: a full buffer would get the pod evicted")


def check_worker(cw: str, spec: dict, c: dict, env: dict, vols: dict, objs: dict, wl: dict,
                 secrets: dict | None) -> None:
    grace = int(env.get("RECFLEET_DRAIN_GRACE_SECS", "60"))
    tgps = spec.get("terminationGracePeriodSeconds", 30)
    if tgps < grace + STOP_MARGIN_SECS:
        fail(cw, f"terminationGracePeriodSeconds {tgps} < drain grace {grace} + {STOP_MARGIN_SECS}")
    shm = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/dev/shm"]
    if not shm or vols.get(shm[0]["name"], {}).get("emptyDir", {}).get("medium") != "Memory":
        fail(cw, "/dev/shm is not an emptyDir with medium Memory")
    if "cpu" not in c.get("resources", {}).get("requests", {}):
        fail(cw, "no CPU request")
    else:
        cores = parse_cpu(c["resources"]["requests"]["cpu"])
        cap = int(env.get("RECFLEET_CAPACITY", "2"))
        # docs/capture.md: ~0.8-1.07 core per 720p recording of a heavy page.
        if cap > cores * 1.25 + 0.01:
            fail(cw, f"capacity {cap} on {cores} requested cores: more than docs/capture.md allows")
    coord = env.get("RECFLEET_COORDINATOR", "")
    svc = [s for (k, s) in objs if k == "Service" and objs[(k, s)]["spec"].get("clusterIP") != "None"
           and objs[(k, s)]["spec"]["selector"].get("app.kubernetes.io/component") == "coordinator"]
    ns = wl["metadata"]["namespace"]
    # Several coordinators: the headless Service's name, which resolves to
    # every coordinator pod (ready or not).
    headless = [s for (k, s) in objs if k == "Service" and objs[(k, s)]["spec"].get("clusterIP") == "None"
                and objs[(k, s)]["spec"]["selector"].get("app.kubernetes.io/component") == "coordinator"
                and objs[(k, s)]["spec"].get("publishNotReadyAddresses")]
    links = [f"$({s.upper().replace('-', '_')}_SERVICE_HOST):7800" for s in svc]
    want = links + [f"{s}.{ns}.svc:7800" for s in headless]
    if coord not in want:
        fail(cw, f"RECFLEET_COORDINATOR={coord!r}, want one of {want} (an IP:port from the service link, "
                 "or the headless Service of several coordinators)")
    elif coord in links and not spec.get("enableServiceLinks", True):
        fail(cw, "RECFLEET_COORDINATOR needs service links, but enableServiceLinks is false")
    names = {f"{s}{suffix}" for s in svc for suffix in ("", f".{ns}", f".{ns}.svc", f".{ns}.svc.cluster.local")}
    if env.get("RECFLEET_SERVER_NAME") not in names:
        fail(cw, f"RECFLEET_SERVER_NAME={env.get('RECFLEET_SERVER_NAME')!r} is not a name make-secrets.sh issues")


def check_tls_paths(cw: str, wname: str, c: dict, env: dict, vols: dict, wl: dict, objs: dict,
                    secrets: dict | None) -> None:
    """RECFLEET_CA/CERT/KEY point into a mounted Secret, at keys it has."""
    replicas = max([wl["spec"].get("replicas", 1)]
                   + [h["spec"]["maxReplicas"] for (k, _), h in objs.items() if k == "HorizontalPodAutoscaler"])
    for var in ("RECFLEET_CA", "RECFLEET_CERT", "RECFLEET_KEY"):
        path = env.get(var)
        if not path:
            fail(cw, f"{var} not set")
            continue
        mount = next((m for m in c.get("volumeMounts", []) if path.startswith(m["mountPath"].rstrip("/") + "/")), None)
        if mount is None or "secret" not in vols.get(mount["name"], {}):
            fail(cw, f"{var}={path} is not in a mounted Secret")
            continue
        sname = vols[mount["name"]]["secret"]["secretName"]
        if secrets is None:
            continue
        if sname not in secrets:
            fail(cw, f"Secret {sname} is not written by make-secrets.sh")
            continue
        key = path[len(mount["mountPath"].rstrip("/")) + 1:]
        for i in range(replicas):
            k = key.replace("$(POD_NAME)", f"{wname}-{i}")
            if k not in secrets[sname]:
                fail(cw, f"{var}: Secret {sname} has no key {k} (make-secrets.sh --workers {replicas})")
                break


def parse_cpu(q: str) -> float:
    q = str(q)
    return int(q[:-1]) / 1000 if q.endswith("m") else float(q)


def check_autoscaler(where: str, what: str, ref: dict, objs: dict, per_replica: list, max_replicas: int,
                     secrets: dict | None) -> None:
    target = objs.get((ref["kind"], ref["name"]))
    if target is None or ref.get("apiVersion") != "apps/v1":
        fail(where, f"{what}: scale target {ref} is not in the base")
        return
    env = env_of(target["spec"]["template"]["spec"]["containers"][0])
    cap = env.get("RECFLEET_CAPACITY")
    for v in per_replica:
        if str(v) != cap:
            fail(where, f"{what}: per-replica target {v} is not one worker's capacity {cap}")
    if max_replicas < target["spec"].get("replicas", 1):
        fail(where, f"{what}: maximum {max_replicas} below the StatefulSet's replicas")
    if secrets is not None:
        certs = [k for k in secrets.get("recfleet-worker-tls", {}) if k.startswith("agent-") and k.endswith("-key.pem")]
        if len(certs) < max_replicas:
            fail(where, f"{what}: up to {max_replicas} workers but {len(certs)} worker certificates")


_adapter_names: set[str] | None = None


def adapter_metric_names() -> set[str]:
    global _adapter_names
    if _adapter_names is None:
        rules = yaml.safe_load((ROOT / "deploy/k8s/examples/prometheus-adapter-rules.yaml").read_text())
        _adapter_names = {r["name"]["as"] for r in rules["rules"].get("external", [])}
    return _adapter_names


# ---- examples not in any kustomization --------------------------------------


def check_examples(base: dict, secrets: dict | None) -> None:
    ex = ROOT / "deploy/k8s/examples"
    rules = yaml.safe_load((ex / "prometheus-adapter-rules.yaml").read_text())
    for r in rules["rules"]["external"]:
        for key in ("seriesQuery", "metricsQuery", "name", "resources"):
            if key not in r:
                fail("prometheus-adapter-rules.yaml", f"external rule without {key}")
        if "<<.LabelMatchers>>" not in r.get("metricsQuery", ""):
            fail("prometheus-adapter-rules.yaml", "metricsQuery does not use <<.LabelMatchers>>")
    so = load_all(ex / "keda-scaledobject.yaml")[0]
    if so.get("apiVersion") != "keda.sh/v1alpha1" or so.get("kind") != "ScaledObject":
        fail("keda-scaledobject.yaml", "not a keda.sh/v1alpha1 ScaledObject")
    spec = so.get("spec", {})
    for key in ("scaleTargetRef", "triggers", "minReplicaCount", "maxReplicaCount"):
        if key not in spec:
            fail("keda-scaledobject.yaml", f"spec.{key} missing")
    for t in spec.get("triggers", []):
        md = t.get("metadata", {})
        if t.get("type") != "prometheus" or not {"serverAddress", "query", "threshold"} <= md.keys():
            fail("keda-scaledobject.yaml", "prometheus trigger needs serverAddress, query, threshold")
    check_autoscaler("keda-scaledobject.yaml", "ScaledObject", spec.get("scaleTargetRef", {}), base,
                     [t["metadata"]["threshold"] for t in spec.get("triggers", [])],
                     spec.get("maxReplicaCount", 0), secrets)
    scrape = yaml.safe_load((ex / "prometheus-scrape.yaml").read_text())
    jobs = {j["job_name"] for j in scrape["scrape_configs"]}
    for f in (ex / "prometheus-adapter-rules.yaml", ex / "keda-scaledobject.yaml"):
        for job in re.findall(r'job="([^"]+)"', f.read_text()):
            if job not in jobs:
                fail(f.name, f'job="{job}" is not a job of prometheus-scrape.yaml')


# ---- names in every file ---------------------------------------------------


def check_names() -> None:
    files = [p for p in (ROOT / "deploy").rglob("*") if p.is_file() and p.suffix != ".py"]
    files.append(ROOT / "docs/deploy.md")
    for f in files:
        if not f.exists():
            fail(str(f), "missing")
            continue
        text = f.read_text(errors="replace")
        rel = f.relative_to(ROOT)
        for v in set(re.findall(r"\bRECFLEET_[A-Z_]+\b", text)):
            if v not in KNOWN_ENV and not v.endswith("_"):
                fail(str(rel), f"unknown variable {v}")
        for v in set(re.findall(r"\bAWS_[A-Z0-9_]+\b", text)):
            if v not in KNOWN_AWS_ENV and not v.endswith("_"):
                fail(str(rel), f"unknown variable {v}")
        # (?![=:]): not a tracing target such as recfleet_agent=debug
        for m in set(re.findall(r"\brecfleet_[a-z_]+\b(?![=:])", text)):
            base = re.sub(r"_(bucket|sum|count)$", "", m) if m.endswith(("_bucket", "_sum", "_count")) else m
            if m not in KNOWN_METRICS and base not in HISTOGRAMS:
                fail(str(rel), f"unknown metric {m}")


# ---- systemd -----------------------------------------------------------------


def unit_settings(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            k, v = line.split("=", 1)
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^#?\s*(RECFLEET_[A-Z_]+)=(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def seconds(v: str) -> float:
    total, rest = 0.0, v.replace(" ", "")
    units = {"min": 60, "ms": 0.001, "s": 1, "m": 60, "h": 3600, "": 1}
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(min|ms|s|m|h|)", rest):
        total += float(num) * units[unit]
    return total


def check_systemd() -> None:
    d = ROOT / "deploy/systemd"
    for role in ("coordinator", "worker"):
        unit = d / f"recfleet-{role}.service"
        s = unit_settings(unit)
        w = str(unit.relative_to(ROOT))
        if s.get("Type") != ["notify"]:
            fail(w, "Type= is not notify")
        if s.get("KillMode") != ["control-group"]:
            fail(w, "KillMode= is not control-group")
        if f"/etc/recfleet/{role}.env" not in s.get("EnvironmentFile", []):
            fail(w, f"no EnvironmentFile=/etc/recfleet/{role}.env")
        if not any(f"recfleet-agent {role}" in x for x in s.get("ExecStart", [])):
            fail(w, f"ExecStart does not run recfleet-agent {role}")
        for key, want in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("PrivateTmp", "yes"),
                          ("ProtectHome", "yes"), ("CapabilityBoundingSet", "")):
            if s.get(key, [None])[-1] != want:
                fail(w, f"{key}={want} expected (hardening), has {s.get(key)}")
        env = {}
        for e in s.get("Environment", []):
            k, _, v = e.partition("=")
            env[k] = v
        env.update({k: v for k, v in env_file(d / f"{role}.env").items()})
        for k in env:
            if k not in KNOWN_ENV:
                fail(w, f"unknown variable {k}")
        if role == "worker":
            grace = float(env.get("RECFLEET_DRAIN_GRACE_SECS", "60"))
            stop = seconds(s.get("TimeoutStopSec", ["90"])[-1])
            if stop < grace + STOP_MARGIN_SECS:
                fail(w, f"TimeoutStopSec={stop:g}s < drain grace {grace:g}s + {STOP_MARGIN_SECS}s")
            if not any("$$MAINPID" in x for x in s.get("ExecStop", [])):
                fail(w, "ExecStop= does not stop the agent first (drain before the cgroup is signalled)")
            for bad in ("RestrictNamespaces", "MemoryDenyWriteExecute", "PrivateUsers", "SystemCallFilter"):
                if bad in s:
                    fail(w, f"{bad}= breaks Chromium (sandbox namespaces, V8 JIT, own seccomp)")


def main() -> int:
    global ROOT
    ROOT = Path(sys.argv[1]).resolve()
    build = Path(sys.argv[2])
    secrets = None
    if (build / "secrets.yaml").exists():
        secrets = {d["metadata"]["name"]: d.get("data", {}) for d in load_all(build / "secrets.yaml")}
    check_kustomizations(ROOT / "deploy/k8s")
    base = load_all(build / "base.yaml")
    check_rendered("base", base, secrets)
    for f in sorted(build.glob("overlay-*.yaml")):
        check_rendered(f.stem.removeprefix("overlay-"), load_all(f), secrets)
    check_examples(index(base), secrets)
    check_names()
    check_systemd()
    for e in errors:
        print(f"deploy-check: {e}", file=sys.stderr)
    what = "kustomizations, rendered manifests, examples, names, systemd units"
    if secrets is None:
        what += " (Secrets not checked: no recfleet-certs binary)"
    print(f"deploy-check: consistency {'FAILED' if errors else 'ok'}: {what}")
    return 1 if errors else 0


ROOT = Path(".")
if __name__ == "__main__":
    sys.exit(main())
