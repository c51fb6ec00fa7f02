// Your own page on the povertymap API: Leaflet from the service's vendored copy, the
// district GeoJSON coloured by headcount, and the service's 1 km poverty tiles.
const service = new URLSearchParams(location.search).get("service") || "http://127.0.0.1:8000";

function load(src) {
  return new Promise((resolve, reject) => {
    const s = document.createElement("script");
    s.src = src;
    s.onload = resolve;
    s.onerror = reject;
    document.head.append(s);
  });
}

// magma_r, as the service's poverty tiles (GET /v1/maps: colormaps.poverty)
const RAMP = ["#fcfdbf", "#fe9f6d", "#de4968", "#8c2981", "#3b0f70", "#000004"];
const colour = (v) => RAMP[Math.min(RAMP.length - 1, Math.floor(v * RAMP.length))];

async function main() {
  document.getElementById("leaflet-css").href = `${service}/web/vendor/leaflet/leaflet.css`;
  await load(`${service}/web/vendor/leaflet/leaflet.js`);
  const maps = await (await fetch(`${service}/v1/maps`)).json();
  const info = maps.maps[0];
  const [w, s, e, n] = info.bounds;
  const map = L.map("map").fitBounds([[s, w], [n, e]]);
  const [tw, ts, te, tn] = info.tile_bounds;
  L.tileLayer(`${service}/v1/maps/${info.name}/tiles/{z}/{x}/{y}.png?layer=poverty`, {
    minZoom: info.min_zoom,
    bounds: [[ts, tw], [tn, te]],
    opacity: 0.8,
  }).addTo(map);
  const admin = await (await fetch(`${service}/v1/maps/${info.name}/admin`)).json();
  const layer = L.geoJSON(admin, {
    style: (f) => {
      const v = f.properties.poverty_rate;
      return v === null
        ? { color: "#333", weight: 1.5, fillOpacity: 0.2, fillColor: "#999" }
        : { color: "#333", weight: 1.5, fillOpacity: 0.5, fillColor: colour(v) };
    },
    onEachFeature: (f, l) => {
      const p = f.properties;
      const text =
        p.poverty_rate === null
          ? `${p.admin_id}: withheld (${p.reason})`
          : `${p.admin_id}: ${(100 * p.poverty_rate).toFixed(0)}% in poverty ` +
            `(90% interval ${(100 * p.poverty_lower).toFixed(0)}–${(100 * p.poverty_upper).toFixed(0)}%)`;
      l.bindPopup(text);
    },
  }).addTo(map);
  document.getElementById("note").textContent =
    `${info.name}: ${admin.features.length} districts, model version ${info.version}`;
  document.body.dataset.ready = String(layer.getLayers().length);
}

main().catch((err) => {
  document.getElementById("note").textContent = `The service could not be reached: ${err}`;
});
