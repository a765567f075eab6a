#!/usr/bin/env bash
# Usage: tests/helm/check.sh
#
# Checks the Helm chart deploy/helm/allocation-processor without a cluster:
#   1. helm lint --strict, with the defaults and with each values file in the chart's ci/;
#   2. helm template with the same values files, every manifest validated strictly against
#      the API schemas of Kubernetes 1.31 and 1.25, the chart's floor (kubernetes-validate
#      --strict; the two custom resources, KEDA's ScaledObject and the ServiceMonitor, against
#      schemas of their own in check_rendered.py), tests on the rendered YAML
#      (check_rendered.py), and NOTES.txt rendered by a client-side dry run;
#   3. every file in tests/helm/bad/ is refused by the chart with the error its first line
#      names (the schema, or the templates' checks of values that contradict each other);
#   4. the chart's README has a row for every value in values.yaml.
# Installs what it needs when missing, cached outside the checkout in $AP_CACHE_DIR/tools:
# Helm built from the Go module proxy by tests/helm/helm.sh (~2.5-4 min once, on 2 cores) and kubernetes-validate
# from PyPI in a virtualenv. AP_HELM=/path/to/helm uses a Helm 4 binary of yours instead.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
here="$root/tests/helm"
chart="$root/deploy/helm/allocation-processor"
KV_VERSION=1.37.0
KUBE_VERSION=1.31.0
KUBE_FLOOR=1.25.0     # Chart.yaml's kubeVersion: >=1.25.0-0
cache=${AP_CACHE_DIR:-${HOME:-/root}/.cache/allocation-processor}
tools="$cache/tools"
start=$SECONDS

log() { printf '[helm-check] %s\n' "$*" >&2; }
die() { printf '[helm-check] error: %s\n' "$*" >&2; exit 1; }

case "${1:-}" in
    -h|--help) sed -n 2p "$0" | sed 's/^# //'; exit 0 ;;
    "") ;;
    *) die "unexpected argument '$1' (usage: tests/helm/check.sh)" ;;
esac

# --- tools ------------------------------------------------------------------------------------
# Helm: built once from the Go module proxy and cached (tests/helm/helm.sh prints its path).
helm=$(bash "$here/helm.sh") || die "no Helm 4 (see above)"
mkdir -p "$tools"
# Two checkouts may run this at once: one builds, the other waits for it.
exec 9>"$tools/.lock"
flock -w 900 9 || die "another check kept $tools/.lock for 15 minutes"

kv_home="$tools/kubernetes-validate-$KV_VERSION"
if [ ! -f "$kv_home/.complete" ]; then
    command -v python3 >/dev/null || die "python3 not found"
    log "installing kubernetes-validate $KV_VERSION from PyPI into $kv_home"
    rm -rf "$kv_home"
    python3 -m venv "$kv_home" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$kv_home/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$KV_VERSION" \
        || die "pip install kubernetes-validate==$KV_VERSION failed"
    touch "$kv_home/.complete"
fi
flock -u 9
kv="$kv_home/bin/kubernetes-validate"
py="$kv_home/bin/python"   # has PyYAML and jsonschema, kubernetes-validate's own dependencies

# --- checks -----------------------------------------------------------------------------------
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
ok() { passed=$((passed + 1)); printf '  ok   %s\n' "$*"; }
ko() { failed=$((failed + 1)); printf '  FAIL %s\n' "$*"; }

cases=(default)
for f in "$chart"/ci/*-values.yaml; do cases+=("$(basename "$f" .yaml)"); done
values_args() { [ "$1" = default ] || printf -- '-f\n%s\n' "$chart/ci/$1.yaml"; }

echo "helm lint --strict"
for c in "${cases[@]}"; do
    mapfile -t args < <(values_args "$c")
    if "$helm" lint --strict "$chart" "${args[@]}" >"$work/lint.out" 2>&1; then
        ok "lint $c"
    else
        ko "lint $c"; sed 's/^/       /' "$work/lint.out"
    fi
done

echo "helm template, tests on the rendered YAML, NOTES, kubernetes-validate --strict"
for c in "${cases[@]}"; do
    mapfile -t args < <(values_args "$c")
    out="$work/$c.yaml"
    if ! "$helm" template ap "$chart" --namespace shop --kube-version "$KUBE_VERSION" \
            "${args[@]}" >"$out" 2>"$work/template.err"; then
        ko "template $c"; sed 's/^/       /' "$work/template.err"
        continue
    fi
    kinds=$("$py" -c 'import sys, yaml; print(" ".join(sorted({d["kind"] for d in yaml.safe_load_all(open(sys.argv[1])) if d})))' "$out")
    ok "template $c: $kinds"
    if "$py" "$here/check_rendered.py" "$out" "$work/$c.core.yaml" 2>"$work/rendered.err"; then
        ok "rendered $c: probes, non-root, secrets, replicas within partitions, hooks"
    else
        ko "rendered $c"; cat "$work/rendered.err"
    fi
    # NOTES.txt renders, and tells about the replicas' cap.
    if "$helm" install ap "$chart" --namespace shop --dry-run=client "${args[@]}" >"$work/notes.out" 2>&1 \
            && sed -n '/^NOTES:/,$p' "$work/notes.out" | grep -q 'sits idle'; then
        ok "NOTES $c: renders, names the partition cap"
    else
        ko "NOTES $c"; sed -n '/^NOTES:/,$p' "$work/notes.out" | sed 's/^/       /'
    fi
    # Every document of Kubernetes' own kinds must validate; a kind without a schema is a
    # failure too (the custom resources were taken out and checked by check_rendered.py).
    # Against the version the checks target and the oldest the chart's kubeVersion admits.
    for v in "$KUBE_VERSION" "$KUBE_FLOOR"; do
        if "$kv" -k "$v" --strict --quiet "$work/$c.core.yaml" >"$work/kv.out" 2>&1 \
                && ! grep -q "Couldn't find schema" "$work/kv.out"; then
            ok "kubernetes-validate -k $v --strict $c ($(grep -c '^kind:' "$work/$c.core.yaml") manifests)"
        else
            ko "kubernetes-validate -k $v --strict $c"; sed 's/^/       /' "$work/kv.out"
        fi
    done
done

echo "values the chart must refuse (tests/helm/bad/)"
for f in "$here"/bad/*.yaml; do
    want=$(sed -n '1s/^# expect: //p' "$f")
    [ -n "$want" ] || { ko "$(basename "$f"): first line must be '# expect: <error text>'"; continue; }
    if "$helm" template ap "$chart" -f "$f" >/dev/null 2>"$work/bad.err"; then
        ko "$(basename "$f"): accepted"
    elif grep -qF -- "$want" "$work/bad.err"; then
        ok "$(basename "$f"): refused ($want)"
    else
        ko "$(basename "$f"): refused, but not with '$want':"; sed 's/^/       /' "$work/bad.err"
    fi
done

echo "chart README"
if "$py" - "$chart/values.yaml" "$chart/README.md" >"$work/readme.out" 2>&1 <<'EOF'
import sys, yaml
values, readme = yaml.safe_load(open(sys.argv[1])), open(sys.argv[2]).read()
def leaves(node, prefix=""):
    for k, v in node.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            yield from leaves(v, path + ".")
        else:
            yield path
# A row for the value, or for an object above it (resources, securityContext, ...).
def covered(path):
    parts = path.split(".")
    return any(f"| `{'.'.join(parts[:i])}` |" in readme for i in range(len(parts), 0, -1))
missing = [p for p in leaves(values) if not covered(p)]
for p in missing:
    print(f"no row for `{p}`")
sys.exit(1 if missing else 0)
EOF
then
    ok "README.md has a row for every value"
else
    ko "README.md lacks values:"; sed 's/^/       /' "$work/readme.out"
fi

echo "$passed passed, $failed failed ($((SECONDS - start)) s)"
[ "$failed" -eq 0 ]
