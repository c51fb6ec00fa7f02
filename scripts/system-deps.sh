#!/usr/bin/env bash
# System packages the test suite needs, installed with apt when missing.
# rasterio, pyogrio and exactextract ship GDAL in their wheels. Packages are listed here as
# they become needed (one line of reason each).
set -euo pipefail
packages=(
  postgresql  # a real PostgreSQL server for the service's audit-trail tests (tests/serve)
  chromium    # the browser the web map's Playwright tests drive (tests/web; no playwright download)
  prometheus  # promtool for make deploy-check, and a real Prometheus scraping the service (tests/deploy)
  shellcheck  # make deploy-check lints deploy/scripts/*.sh and scripts/*.sh (skipped when missing)
)
missing=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
