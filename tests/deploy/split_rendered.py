#!/usr/bin/env python3
"""split_rendered.py RENDERED OUTDIR: the parts of a `helm template` output that podman kube
play runs, written unchanged but for the one conversion podman needs.

  OUTDIR/migrate.yaml     the migration hook Job's pod template, as a Pod (podman 4.3 kube
                          play runs Pods and Deployments, not Jobs): same metadata labels,
                          same spec (restartPolicy Never, image, args, env, securityContext)
  OUTDIR/deployment.yaml  the ConfigMap and the Deployment, as rendered but for the
                          containers' `ports`: podman 4.3 publishes every containerPort on
                          the host (hostPort defaults to it), so two replicas on one host
                          collide, and with hostNetwork it refuses port mappings outright.
                          The ports removed are listed in info.json (the test checks they are
                          the http port alone).
  OUTDIR/info.json        names: deployment, replicas, migration pod, the Secrets the pods
                          read (secretKeyRef name -> keys)

Everything else (Service, ServiceAccount, PodDisruptionBudget, the helm test Pod) has no
podman equivalent and is left out; the test says so."""
import json, sys, yaml

docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
out = sys.argv[2]
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)
(deployment,) = by_kind["Deployment"]
(configmap,) = by_kind["ConfigMap"]
(job,) = [j for j in by_kind.get("Job", []) if "helm.sh/hook" in j["metadata"].get("annotations", {})]

template = job["spec"]["template"]
pod = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"name": job["metadata"]["name"], "labels": template["metadata"].get("labels", {})},
       "spec": template["spec"]}
with open(f"{out}/migrate.yaml", "w") as f:
    yaml.safe_dump(pod, f, sort_keys=False)
removed_ports = []
for c in deployment["spec"]["template"]["spec"]["containers"]:
    removed_ports += c.pop("ports", [])
with open(f"{out}/deployment.yaml", "w") as f:
    yaml.safe_dump_all([configmap, deployment], f, sort_keys=False)

secrets = {}
for spec in (deployment["spec"]["template"]["spec"], template["spec"]):
    for c in spec["containers"]:
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                secrets.setdefault(ref["name"], set()).add(ref["key"])
json.dump({"deployment": deployment["metadata"]["name"],
           "replicas": deployment["spec"]["replicas"],
           "migrate_pod": pod["metadata"]["name"],
           "removed_ports": removed_ports,
           "hook": job["metadata"]["annotations"]["helm.sh/hook"],
           "secrets": {k: sorted(v) for k, v in secrets.items()}},
          open(f"{out}/info.json", "w"))
