#!/usr/bin/env python3
"""Tests on the chart's rendered YAML (what `helm template` printed), for what matters once it
runs: the probes reach paths the processor serves on the port it listens on, every pod runs as
non-root on a read-only root, no secret value leaks out of a Secret, the replicas stay within
the command topics' partitions, and the hooks run the right commands.

Usage: check_rendered.py RENDERED.yaml CORE_OUT.yaml
Writes the documents of Kubernetes' own kinds to CORE_OUT.yaml for kubernetes-validate, and
validates the two custom resources the chart may render (KEDA ScaledObject, Prometheus-operator
ServiceMonitor) against the small schemas below: kubernetes-validate has no schema for CRDs.
Those schemas are written here from the CRDs' documented fields (keda.sh/v1alpha1,
monitoring.coreos.com/v1), cover only the fields the chart renders, and reject any other.
Exit status 1 when a check fails; one line per failure on stderr.
"""
import re
import sys

import jsonschema
import yaml

failures = []


def fail(msg):
    failures.append(msg)


# --- the custom resources ---------------------------------------------------------------------
STR = {"type": "string"}
INT32 = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
LABELS = {"type": "object", "additionalProperties": STR}
METADATA = {"type": "object", "required": ["name"], "properties": {
    "name": STR, "namespace": STR, "labels": LABELS, "annotations": LABELS}, "additionalProperties": False}
LABEL_SELECTOR = {"type": "object", "additionalProperties": False, "properties": {
    "matchLabels": LABELS, "matchExpressions": {"type": "array"}}}


def resource(api_version, kind, spec):
    return {"type": "object", "additionalProperties": False,
            "required": ["apiVersion", "kind", "metadata", "spec"],
            "properties": {"apiVersion": {"const": api_version}, "kind": {"const": kind},
                           "metadata": METADATA, "spec": spec}}


CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): resource("keda.sh/v1alpha1", "ScaledObject", {
        "type": "object", "additionalProperties": False, "required": ["scaleTargetRef", "triggers"],
        "properties": {
            "scaleTargetRef": {"type": "object", "additionalProperties": False, "required": ["name"],
                               "properties": {"apiVersion": STR, "kind": STR, "name": STR,
                                              "envSourceContainerName": STR}},
            "pollingInterval": INT32, "cooldownPeriod": INT32,
            "minReplicaCount": INT32, "maxReplicaCount": INT32,
            "triggers": {"type": "array", "minItems": 1, "items": {
                "type": "object", "additionalProperties": False, "required": ["type", "metadata"],
                "properties": {"type": STR, "name": STR, "metricType": STR,
                               "metadata": {"type": "object", "additionalProperties": STR},
                               "authenticationRef": {"type": "object"}}}}}}),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): resource("monitoring.coreos.com/v1", "ServiceMonitor", {
        "type": "object", "additionalProperties": False, "required": ["selector"],
        "properties": {
            "selector": LABEL_SELECTOR,
            "namespaceSelector": {"type": "object", "additionalProperties": False, "properties": {
                "any": {"type": "boolean"}, "matchNames": {"type": "array", "items": STR}}},
            "endpoints": {"type": "array", "items": {
                "type": "object", "additionalProperties": False,
                "properties": {"port": STR, "path": STR, "scheme": {"enum": ["http", "https"]},
                               "interval": DURATION, "scrapeTimeout": DURATION}}}}}),
}


# --- helpers ----------------------------------------------------------------------------------
def pod_specs(docs):
    """(description, pod spec) of every pod the release makes."""
    for d in docs:
        kind, name = d["kind"], d["metadata"]["name"]
        if kind in ("Deployment", "Job"):
            yield f"{kind}/{name}", d["spec"]["template"]["spec"]
        elif kind == "Pod":
            yield f"Pod/{name}", d["spec"]


def resolve_port(container, port):
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    return None


def secret_values(docs):
    out = set()
    for d in docs:
        if d["kind"] == "Secret":
            out.update(str(v) for v in (d.get("stringData") or {}).values())
            out.update(str(v) for v in (d.get("data") or {}).values())
    return {v for v in out if len(v) >= 8}


def walk_strings(node):
    if isinstance(node, dict):
        for k, v in node.items():
            yield str(k)
            yield from walk_strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk_strings(v)
    elif node is not None:
        yield str(node)


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


# --- the checks -------------------------------------------------------------------------------
def main(rendered, core_out):
    with open(rendered) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)

    core = []
    for d in docs:
        schema = CRD_SCHEMAS.get((d["apiVersion"], d["kind"]))
        if schema is None:
            core.append(d)
            continue
        for e in jsonschema.Draft7Validator(schema).iter_errors(d):
            fail(f"{d['kind']}/{d['metadata']['name']}: {'/'.join(map(str, e.absolute_path))}: {e.message}")
    with open(core_out, "w") as f:
        yaml.safe_dump_all(core, f, sort_keys=False)

    deployments = by_kind.get("Deployment", [])
    configmaps = by_kind.get("ConfigMap", [])
    if len(deployments) != 1 or len(configmaps) != 1:
        fail(f"expected one Deployment and one ConfigMap, got {len(deployments)} and {len(configmaps)}")
        return
    dep, cm = deployments[0], configmaps[0]
    env = cm["data"]
    pod = dep["spec"]["template"]["spec"]
    (proc,) = [c for c in pod["containers"] if c["name"] == "processor"]

    # The processor listens on HTTP_ADDR; the probes must reach it there, on the right paths.
    # One exception: a single-node harness in the host's network (hostNetwork, http.addr
    # 127.0.0.1:0, ci/podman-values.yaml), where each replica binds a free port the probes
    # cannot follow; the harness asks each pod itself (tests/deploy/kube_play.sh).
    m = re.fullmatch(r"0\.0\.0\.0:(\d+)", env.get("HTTP_ADDR", ""))
    if pod.get("hostNetwork") and env.get("HTTP_ADDR") == "127.0.0.1:0":
        m = None
    elif not m:
        fail(f"ConfigMap HTTP_ADDR must listen on all addresses in the pod, got {env.get('HTTP_ADDR')!r}")
        return
    http_port = int(m.group(1)) if m else proc["ports"][0]["containerPort"]
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
        get = (proc.get(probe) or {}).get("httpGet")
        if not get:
            fail(f"{probe} is not an httpGet probe")
            continue
        if get.get("path") != path:
            fail(f"{probe} asks {get.get('path')!r}, the processor serves {path}")
        if resolve_port(proc, get.get("port")) != http_port:
            fail(f"{probe} port {get.get('port')!r} is not the HTTP_ADDR port {http_port}")
    if proc.get("args") != ["run"]:
        fail(f"the processor's args are {proc.get('args')}, expected ['run']")
    if not any((e.get("configMapRef") or {}).get("name") == cm["metadata"]["name"] for e in proc.get("envFrom", [])):
        fail("the processor does not read the chart's ConfigMap")
    if pod.get("enableServiceLinks") is not False:
        fail("enableServiceLinks must be false: service links add KAFKA_* variables librdkafka would reject")
    if pod.get("terminationGracePeriodSeconds", 30) < 30:
        fail("terminationGracePeriodSeconds below 30 s leaves no time to finish a batch")
    if not pod.get("topologySpreadConstraints"):
        fail("no topologySpreadConstraints")
    if not (proc.get("resources") or {}).get("requests"):
        fail("the processor has no resource requests")

    # Every pod: non-root, read-only root, no privilege, no capability, seccomp.
    for what, spec in pod_specs(docs):
        psc = spec.get("securityContext") or {}
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            sc = c.get("securityContext") or {}
            non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
            uid = sc.get("runAsUser", psc.get("runAsUser"))
            if non_root is not True:
                fail(f"{what} container {c['name']}: runAsNonRoot is not true")
            if uid is None or uid == 0:
                fail(f"{what} container {c['name']}: runAsUser must be a non-zero uid (got {uid})")
            if sc.get("readOnlyRootFilesystem") is not True:
                fail(f"{what} container {c['name']}: root filesystem is writable")
            if sc.get("allowPrivilegeEscalation") is not False:
                fail(f"{what} container {c['name']}: allowPrivilegeEscalation is not false")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                fail(f"{what} container {c['name']}: capabilities not all dropped")
            seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
            if seccomp != "RuntimeDefault":
                fail(f"{what} container {c['name']}: seccomp profile is {seccomp}, not RuntimeDefault")
            mounts = {v["mountPath"] for v in c.get("volumeMounts", [])}
            if c["name"] in ("processor", "migrate") and "/tmp" not in mounts:
                fail(f"{what} container {c['name']}: no writable /tmp")

    # Secrets: the credentials come through secretKeyRef, never in a ConfigMap or in plain env.
    secret_names = {"DATABASE_URL", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "SMTP_URL", "HTTP_AUTH_TOKEN"}
    suspicious = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL|DATABASE_URL|SMTP_URL|SASL_USERNAME", re.I)
    for c in configmaps:
        for k, v in (c.get("data") or {}).items():
            if suspicious.search(k):
                fail(f"ConfigMap/{c['metadata']['name']} holds {k}: credentials belong in the Secret")
            if re.search(r"://[^/@\s]+:[^/@\s]*@", str(v)):
                fail(f"ConfigMap/{c['metadata']['name']} {k} has a URL with a password")
    # ... or, with secret.asFiles, as <NAME>_FILE naming a file of a Secret mounted read-only.
    for what, spec in pod_specs(docs):
        secret_volumes = {v["name"] for v in spec.get("volumes", []) if "secret" in v}
        for c in spec.get("containers", []):
            secret_dirs = [m["mountPath"].rstrip("/") + "/" for m in c.get("volumeMounts", [])
                           if m["name"] in secret_volumes]
            for m in c.get("volumeMounts", []):
                if m["name"] in secret_volumes and not m.get("readOnly"):
                    fail(f"{what} container {c['name']}: the Secret is mounted writable")
            for e in c.get("env", []):
                if e["name"] in secret_names and "secretKeyRef" not in (e.get("valueFrom") or {}):
                    fail(f"{what} container {c['name']}: {e['name']} is not read from a Secret")
                base = e["name"][:-5] if e["name"].endswith("_FILE") else None
                if base in secret_names and not any(str(e.get("value", "")).startswith(d) for d in secret_dirs):
                    fail(f"{what} container {c['name']}: {e['name']} names no file of a mounted Secret")
    if not any(e["name"] in ("DATABASE_URL", "DATABASE_URL_FILE") for e in proc.get("env", [])):
        fail("the processor gets no DATABASE_URL")
    leaked = secret_values(docs)
    for d in docs:
        if d["kind"] == "Secret":
            continue
        for s in walk_strings(d):
            for v in leaked:
                if v in s:
                    fail(f"{d['kind']}/{d['metadata']['name']} contains a value of the Secret")
    for d in docs:
        for s in walk_strings(d):
            if "ci-placeholder" in s and d["kind"] != "Secret":
                fail(f"{d['kind']}/{d['metadata']['name']} contains a ci-placeholder credential")

    # Replicas within the partitions the consumer group shares, each pod CONSUMER_THREADS
    # members of it.
    topics = [t for t in env.get("COMMAND_TOPICS", "").split(",") if t] or [f"{env['TOPIC_PREFIX']}.commands"]
    cap = int(env["TOPIC_PARTITIONS"]) * len(topics) // int(env.get("CONSUMER_THREADS", "1"))
    hpas = by_kind.get("HorizontalPodAutoscaler", [])
    scaled = by_kind.get("ScaledObject", [])
    if hpas and scaled:
        fail("both an HPA and a KEDA ScaledObject scale the Deployment")
    if hpas or scaled:
        if "replicas" in dep["spec"]:
            fail("the Deployment sets replicas while an autoscaler owns them")
    elif dep["spec"].get("replicas", 1) > cap:
        fail(f"Deployment replicas {dep['spec']['replicas']} exceed the {cap} partitions")
    for h in hpas:
        if h["spec"]["maxReplicas"] > cap:
            fail(f"HPA maxReplicas {h['spec']['maxReplicas']} exceeds the {cap} partitions")
        if h["spec"]["scaleTargetRef"]["name"] != dep["metadata"]["name"]:
            fail("the HPA does not scale the Deployment")
    for s in scaled:
        if s["spec"]["maxReplicaCount"] > cap:
            fail(f"ScaledObject maxReplicaCount {s['spec']['maxReplicaCount']} exceeds the {cap} partitions")
        if s["spec"]["scaleTargetRef"]["name"] != dep["metadata"]["name"]:
            fail("the ScaledObject does not scale the Deployment")

    # The Service reaches the processor's HTTP port, and only the processor's pods.
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    for svc in by_kind.get("Service", []):
        sel = svc["spec"]["selector"]
        if not matches(sel, pod_labels):
            fail(f"Service/{svc['metadata']['name']} does not select the processor's pods")
        for what, spec in pod_specs(docs):
            if what.startswith("Deployment/"):
                continue
            labels = next(d for d in docs if f"{d['kind']}/{d['metadata']['name']}" == what)
            labels = (labels["spec"]["template"]["metadata"] if labels["kind"] == "Job" else labels["metadata"]).get("labels", {})
            if matches(sel, labels):
                fail(f"Service/{svc['metadata']['name']} also selects {what}")
        for p in svc["spec"]["ports"]:
            if resolve_port(proc, p["targetPort"]) != http_port:
                fail(f"Service/{svc['metadata']['name']} targets {p['targetPort']!r}, not the HTTP port")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        if not matches(pdb["spec"]["selector"]["matchLabels"], pod_labels):
            fail("the PodDisruptionBudget does not select the processor's pods")

    # Hooks: the migration before install and upgrade, the test asking /readyz.
    for job in by_kind.get("Job", []):
        hooks = set(job["metadata"].get("annotations", {}).get("helm.sh/hook", "").split(","))
        if {"pre-install", "pre-upgrade"} - hooks:
            fail(f"Job/{job['metadata']['name']} is not a pre-install and pre-upgrade hook")
        (c,) = job["spec"]["template"]["spec"]["containers"]
        if c.get("args") != ["migrate"]:
            fail(f"Job/{job['metadata']['name']} runs {c.get('args')}, not migrate")
        sa = job["spec"]["template"]["spec"].get("serviceAccountName")
        if sa and any(s["metadata"]["name"] == sa for s in by_kind.get("ServiceAccount", [])):
            fail("the pre-install Job uses the chart's ServiceAccount, which does not exist yet then")
        for e in (c.get("envFrom") or []):
            if "configMapRef" in e:
                fail("the pre-install Job reads a ConfigMap the release has not created yet")
    for p in by_kind.get("Pod", []):
        if p["metadata"].get("annotations", {}).get("helm.sh/hook") != "test":
            fail(f"Pod/{p['metadata']['name']} is not a helm test hook")
        script = " ".join(walk_strings(p["spec"]["containers"]))
        if "/readyz" not in script:
            fail(f"Pod/{p['metadata']['name']} does not ask /readyz")
    for s in by_kind.get("Secret", []):
        if "helm.sh/hook" not in s["metadata"].get("annotations", {}):
            fail("a chart-made Secret must be a hook, or the pre-install migration cannot read it")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.split("\n\n")[1])
    try:
        main(sys.argv[1], sys.argv[2])
    except (KeyError, TypeError, ValueError) as e:
        fail(f"unexpected shape of the rendered YAML: {type(e).__name__}: {e}")
    for f in failures:
        print(f"  FAIL {f}", file=sys.stderr)
    sys.exit(1 if failures else 0)
