#!/usr/bin/env bash
# Move a registered model's alias: forward to VERSION, or back to the previous holder.
#
#   update_model_version.sh [--dry-run] [--alias champion] [--runs runs] NAME VERSION
#   update_model_version.sh [--dry-run] [--alias champion] [--runs runs] --rollback NAME
#
# A thin wrapper over `povertymap models promote NAME VERSION --alias ALIAS` and
# `povertymap models rollback NAME --alias ALIAS`. Services started with
# `serve --model NAME@ALIAS` follow the alias by themselves within
# POVERTYMAP_REGISTRY_POLL_SECONDS; deploy_model.sh also reloads a service at once.
#
# Environment: POVERTYMAP_BIN (default: povertymap), POVERTYMAP_TRACKING_URI (the store;
# default: <runs>/mlflow.db).
set -euo pipefail

usage() {
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
  exit "${1:-2}"
}

dry_run=0
rollback=0
alias_name=champion
runs=runs
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --rollback) rollback=1 ;;
    --alias) alias_name=${2:?--alias needs a value}; shift ;;
    --runs) runs=${2:?--runs needs a value}; shift ;;
    -h|--help) usage 0 ;;
    --) shift; args+=("$@"); break ;;
    -*) echo "update_model_version.sh: unknown option $1" >&2; usage 2 ;;
    *) args+=("$1") ;;
  esac
  shift
done

bin=${POVERTYMAP_BIN:-povertymap}
if [ "$rollback" -eq 1 ]; then
  [ ${#args[@]} -eq 1 ] || { echo "update_model_version.sh: --rollback takes NAME only" >&2; usage 2; }
  cmd=("$bin" models rollback "${args[0]}" --alias "$alias_name" --runs "$runs")
else
  [ ${#args[@]} -eq 2 ] || { echo "update_model_version.sh: give NAME VERSION (or --rollback NAME)" >&2; usage 2; }
  case "${args[1]}" in
    ''|*[!0-9]*) echo "update_model_version.sh: VERSION must be a number, got '${args[1]}'" >&2; exit 2 ;;
  esac
  cmd=("$bin" models promote "${args[0]}" "${args[1]}" --alias "$alias_name" --runs "$runs")
fi

if [ "$dry_run" -eq 1 ]; then
  echo "would run: ${cmd[*]}"
else
  "${cmd[@]}"
fi
