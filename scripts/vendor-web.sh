#!/usr/bin/env bash
# Copy the web map's front-end libraries, at the versions pinned in web/package-lock.json,
# into the Python package (src/povertymap/serve/web/vendor/), where they are committed so
# that `pip install povertymap[serve]` needs no npm. Run after changing web/package.json:
#   (cd web && npm install leaflet@X.Y.Z) && bash scripts/vendor-web.sh
# tests/web/test_vendor.py checks that the copied files are the pinned version.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
web="$root/web"
dest="$root/src/povertymap/serve/web/vendor/leaflet"
(cd "$web" && npm ci --no-audit --no-fund --silent)
src="$web/node_modules/leaflet"
version="$(node -p "require('$src/package.json').version")"
pinned="$(node -p "require('$web/package.json').dependencies.leaflet")"
if [ "$version" != "$pinned" ]; then
  echo "installed leaflet $version is not the pinned $pinned; run npm install in web/" >&2
  exit 1
fi
rm -rf "$dest"
mkdir -p "$dest/images"
cp "$src/dist/leaflet.js" "$src/dist/leaflet.css" "$src/LICENSE" "$dest/"
cp "$src/dist/images/"*.png "$dest/images/"
echo "$version" > "$dest/VERSION"
echo "vendored leaflet $version into ${dest#"$root"/}"
