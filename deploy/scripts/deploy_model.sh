#!/usr/bin/env bash
# Deploy a model version: move the alias (update_model_version.sh), then have a running
# service load the new holder now instead of at its next registry poll.
#
#   deploy_model.sh [--dry-run] [--alias champion] [--runs runs] NAME VERSION \
#       [--url https://maps.example.org --map MAP [--service-runs /data/runs | --run-dir DIR]]
#   deploy_model.sh [--dry-run] ... --rollback NAME [--url ... --map MAP]
#
# The reload is `POST URL/v1/admin/maps/MAP/reload {"run_dir": DIR}` with the admin key
# from POVERTYMAP_ADMIN_KEY (never on the command line). DIR is the run directory as the
# service sees it: --run-dir, or --service-runs (default /data/runs, the volume of
# deploy/compose and deploy/k8s) joined with the run id of NAME@ALIAS. The service
# loads and self-tests it beside the version it serves and swaps (409: it keeps the old).
#
# Environment: POVERTYMAP_ADMIN_KEY (with --url), POVERTYMAP_BIN (povertymap),
# POVERTYMAP_PYTHON (the python of that install, to read the run id; default python3),
# POVERTYMAP_TRACKING_URI (the store).
set -euo pipefail

usage() {
  sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
  exit "${1:-2}"
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dry_run=0
rollback=0
alias_name=champion
runs=runs
url=""
map=""
service_runs=/data/runs
run_dir=""
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --rollback) rollback=1 ;;
    --alias) alias_name=${2:?--alias needs a value}; shift ;;
    --runs) runs=${2:?--runs needs a value}; shift ;;
    --url) url=${2:?--url needs a value}; shift ;;
    --map) map=${2:?--map needs a value}; shift ;;
    --service-runs) service_runs=${2:?--service-runs needs a value}; shift ;;
    --run-dir) run_dir=${2:?--run-dir needs a value}; shift ;;
    -h|--help) usage 0 ;;
    --) shift; args+=("$@"); break ;;
    -*) echo "deploy_model.sh: unknown option $1" >&2; usage 2 ;;
    *) args+=("$1") ;;
  esac
  shift
done
[ ${#args[@]} -ge 1 ] || usage 2
name=${args[0]}
if [ -n "$url" ] && [ -z "$map" ]; then
  echo "deploy_model.sh: --url needs --map (the map name the service serves)" >&2
  exit 2
fi

move=("$here/update_model_version.sh" --alias "$alias_name" --runs "$runs")
[ "$dry_run" -eq 1 ] && move+=(--dry-run)
[ "$rollback" -eq 1 ] && move+=(--rollback)
"${move[@]}" "${args[@]}"

if [ -z "$url" ]; then
  [ "$dry_run" -eq 1 ] && exit 0
  echo "alias moved; services serving --model $name@$alias_name follow it at their next registry poll"
  exit 0
fi

endpoint="${url%/}/v1/admin/maps/$map/reload"
if [ -z "$run_dir" ]; then
  if [ "$dry_run" -eq 1 ]; then
    run_dir="$service_runs/<run id of $name@$alias_name>"
  else
    run_dir="$service_runs/$(
      "${POVERTYMAP_PYTHON:-python3}" - "$name@$alias_name" "$runs" <<'PY'
import sys
from pathlib import Path

from povertymap.mlops.registry import get_version
from povertymap.mlops.tracking import tracking_uri

print(get_version(sys.argv[1], uri=tracking_uri(Path(sys.argv[2]))).run_id)
PY
    )"
  fi
fi
body=$(printf '{"run_dir": "%s"}' "$run_dir")

if [ "$dry_run" -eq 1 ]; then
  echo "would run: POST $endpoint $body (Authorization: Bearer \$POVERTYMAP_ADMIN_KEY)"
  exit 0
fi
: "${POVERTYMAP_ADMIN_KEY:?set POVERTYMAP_ADMIN_KEY to an admin key (povertymap keys create --role admin)}"
# The key goes to curl on stdin (-H @-), so it never shows in the process list.
printf 'Authorization: Bearer %s\n' "$POVERTYMAP_ADMIN_KEY" |
  curl --silent --show-error --fail-with-body --max-time 600 \
    -H @- -H 'Content-Type: application/json' -X POST --data "$body" "$endpoint"
echo
