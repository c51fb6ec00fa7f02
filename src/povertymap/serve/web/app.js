// The web map: districts and 1 km cells from the service, popups, the role switch, and
// the ready signal (window.povertymapReady; body[data-ready="true"]). window.povertymap
// holds the Leaflet map and the page's state for embedders and tests. Plain ES modules, Leaflet as the global `L`
// (vendored, loaded by index.html). See docs/frontend.md.

import { call, mapPath, storedKey, storeKey } from "./api.js";
import * as fmt from "./format.js";
import { colour } from "./palette.js";
import { Scenario } from "./scenario.js";
import { applyStrings, t } from "./strings.js";

const $ = (id) => document.getElementById(id);

/** District variables: property names, ramp and units. */
const DISTRICT_VARS = {
  estimate: { value: "estimate", lo: "lower", hi: "upper", cv: "cv", ramp: "viridis", kind: "estimate" },
  headcount: { value: "poverty_rate", lo: "poverty_lower", hi: "poverty_upper", cv: "cv", ramp: "magma_r", kind: "share" },
  fh: { value: "fh_mean", lo: "fh_mean_lower", hi: "fh_mean_upper", cv: "fh_mean_cv", ramp: "viridis", kind: "estimate" },
};
/** Cell tile layers of the service and how their values read. */
const CELL_KINDS = { estimate: "estimate", poverty: "share", uncertainty: "width" };

const state = {
  maps: [],
  info: null,
  role: "public",
  admin: null,
  choice: "cells:poverty",
  fade: true,
  districtsDrawn: false,
  tilesLoaded: false,
  selection: null,
};

let map = null;
let tiles = null;
let districts = null;
let hatches = null;
let selectedLayer = null;
let scenario = null;

function status(text, error = false) {
  const el = $("pm-status");
  el.textContent = text;
  el.classList.toggle("pm-error", error);
}

function canSeeCells() {
  return state.role === "analyst" || state.role === "admin";
}

function checkReady() {
  const needTiles = state.choice.startsWith("cells:");
  if (state.districtsDrawn && (state.tilesLoaded || !needTiles) && !window.povertymapReady) {
    window.povertymapReady = true;
    document.body.dataset.ready = "true";
    document.dispatchEvent(new CustomEvent("povertymap:ready"));
  }
}

// ---- units and legend ---------------------------------------------------------------

function units(kind) {
  const info = state.info || {};
  const target = (info.target || "").replaceAll("_", " ") || "welfare";
  if (kind === "share") return t("unitsHeadcount", { line: fmt.num(info.poverty_line) });
  if (kind === "width") return t("unitsWidth", { level: fmt.level(info.level), target });
  return t("unitsEstimate", { target });
}

function formatValue(kind, v) {
  return kind === "share" ? fmt.pct(v) : fmt.num(v);
}

function districtRange(spec) {
  const values = state.admin.features
    .map((f) => f.properties[spec.value])
    .filter((v) => v !== null && v !== undefined && Number.isFinite(v));
  if (!values.length) return [0, 1];
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  return hi > lo ? [lo, hi] : [lo, lo + 1];
}

function drawLegend() {
  if (!state.info || !state.admin) return;
  const [mode, name] = state.choice.split(":");
  let ramp;
  let lo;
  let hi;
  let kind;
  if (mode === "cells") {
    ramp = state.info.colormaps?.[name] || "viridis";
    [lo, hi] = state.info.ranges?.[name] || [0, 1];
    kind = CELL_KINDS[name];
  } else {
    const spec = DISTRICT_VARS[name];
    ramp = spec.ramp;
    [lo, hi] = districtRange(spec);
    kind = spec.kind;
  }
  $("pm-legend-units").textContent = units(kind);
  const rampEl = $("pm-legend-ramp");
  rampEl.replaceChildren();
  for (let i = 0; i < 20; i++) {
    const s = document.createElement("span");
    s.style.backgroundColor = colour(ramp, lo + ((hi - lo) * (i + 0.5)) / 20, lo, hi);
    rampEl.append(s);
  }
  const ticks = $("pm-legend-ticks");
  ticks.replaceChildren(
    ...[lo, (lo + hi) / 2, hi].map((v) => {
      const s = document.createElement("span");
      s.textContent = formatValue(kind, v);
      return s;
    }),
  );
  rampEl.dataset.ramp = ramp;
  $("pm-legend-fade").hidden = mode !== "districts" || !state.fade;
  $("pm-legend-selected").hidden = !state.selection;
}

// ---- districts ----------------------------------------------------------------------

function fadeOpacity(cv) {
  if (cv === null || cv === undefined || !Number.isFinite(cv)) return 0.3;
  return Math.max(0.25, 0.85 - (Math.min(cv, 0.3) / 0.3) * 0.6);
}

function districtStyle(feature) {
  const [mode, name] = state.choice.split(":");
  const base = { color: "#333333", weight: 1.5, opacity: 0.9, fill: true };
  if (mode === "cells") return { ...base, fillOpacity: 0, fillColor: "#ffffff" };
  const spec = DISTRICT_VARS[name];
  const v = feature.properties[spec.value];
  if (v === null || v === undefined) return { ...base, fillColor: "#d9d9d9", fillOpacity: 0.6 };
  const [lo, hi] = districtRange(spec);
  const opacity = state.fade ? fadeOpacity(feature.properties[spec.cv]) : 0.8;
  return { ...base, fillColor: colour(spec.ramp, v, lo, hi), fillOpacity: opacity };
}

function tagPaths(layerGroup, cls) {
  layerGroup.eachLayer((layer) => {
    const el = layer.getElement && layer.getElement();
    if (!el) return;
    const p = layer.feature.properties;
    el.classList.add(cls);
    el.dataset.adminId = p.admin_id;
    el.dataset.publish = p.publish || "";
  });
}

function drawDistricts() {
  if (districts) districts.remove();
  if (hatches) hatches.remove();
  districts = L.geoJSON(state.admin, { style: districtStyle }).addTo(map);
  districts.on("click", (e) => openDistrictPopup(e.layer.feature, e.latlng));
  tagPaths(districts, "pm-district");
  const withheld = {
    type: "FeatureCollection",
    features: state.admin.features.filter((f) => f.properties.publish === "suppressed"),
  };
  hatches = L.geoJSON(withheld, {
    interactive: false,
    style: () => ({ stroke: false, fill: true, fillColor: "url(#pm-hatch)", fillOpacity: 1 }),
  }).addTo(map);
  tagPaths(hatches, "pm-hatch");
  if (selectedLayer) selectedLayer.bringToFront();
  state.districtsDrawn = true;
  checkReady();
}

function restyle() {
  if (districts) {
    districts.setStyle(districtStyle);
  }
  drawLegend();
}

// ---- popups -------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function row(label, field, value, text, intervalText = null) {
  return [
    el("dt", {}, label),
    el(
      "dd",
      { "data-field": field, "data-value": value === null || value === undefined ? "" : String(value) },
      text,
      intervalText ? el("span", { class: "pm-interval" }, ` (${intervalText})`) : null,
    ),
  ];
}

function interval(kind, lo, hi) {
  if (lo === null || lo === undefined || hi === null || hi === undefined) return null;
  return t("interval", {
    level: fmt.level(state.info.level),
    lo: formatValue(kind, lo),
    hi: formatValue(kind, hi),
  });
}

function districtSection(p) {
  const title = p.admin_name
    ? t("districtNamed", { name: p.admin_name, id: p.admin_id })
    : t("district", { id: p.admin_id });
  const parts = [el("h3", {}, title)];
  if (p.publish === "suppressed" || p.publish === "flagged") {
    const reason = p.reason || t("noValue");
    const key = p.publish === "flagged" ? "withheldWhy" : canSeeCells() ? "withheldPublic" : "withheldWhy";
    const text = p.publish === "flagged" ? `${t("publish_flagged")}: ${reason}` : t(key, { reason });
    parts.push(el("p", { class: "pm-why", "data-field": "reason" }, text));
  }
  const dl = el("dl");
  dl.append(
    ...row(t("estimate"), "estimate", p.estimate, fmt.num(p.estimate), interval("estimate", p.lower, p.upper)),
    ...row(
      t("headcount"),
      "poverty_rate",
      p.poverty_rate,
      fmt.pct(p.poverty_rate),
      interval("share", p.poverty_lower, p.poverty_upper),
    ),
    ...row(
      t("fhEstimate"),
      "fh_mean",
      p.fh_mean,
      fmt.num(p.fh_mean),
      interval("estimate", p.fh_mean_lower, p.fh_mean_upper),
    ),
    ...row(t("cv"), "fh_mean_cv", p.fh_mean_cv, fmt.pct(p.fh_mean_cv, 1)),
    ...row(t("population"), "population", p.population, fmt.int(p.population)),
    ...row(t("publish"), "publish", p.publish, t(`publish_${p.publish || "yes"}`)),
  );
  parts.push(dl);
  return el("section", { class: "pm-popup-district" }, ...parts);
}

function cellSection(c) {
  const dl = el("dl");
  dl.append(
    ...row(t("cellValue"), "cell-estimate", c.estimate, fmt.num(c.estimate), interval("estimate", c.lower, c.upper)),
    ...row(
      t("cellPoverty"),
      "cell-poverty_rate",
      c.poverty_rate,
      fmt.pct(c.poverty_rate),
      interval("share", c.poverty_lower, c.poverty_upper),
    ),
    ...row(t("population"), "cell-population", c.population, fmt.int(c.population)),
  );
  return el("section", { class: "pm-popup-cell", "data-cell-id": c.cell_id }, el("h4", {}, t("cell", { id: c.cell_id })), dl);
}

async function openDistrictPopup(feature, latlng) {
  const box = el("div", { class: "pm-popup" });
  if (canSeeCells()) {
    const q = `?lon=${latlng.lng.toFixed(6)}&lat=${latlng.lat.toFixed(6)}`;
    const r = await call(mapPath(state.info.name, `/point${q}`));
    if (r.ok && r.data) box.append(cellSection(r.data.cell));
  }
  box.append(districtSection(feature.properties));
  L.popup({ maxWidth: 320, autoPanPadding: [20, 20] }).setLatLng(latlng).setContent(box).openOn(map);
}

// ---- cells --------------------------------------------------------------------------

function drawTiles() {
  const [mode, name] = state.choice.split(":");
  if (tiles) {
    tiles.remove();
    tiles = null;
  }
  if (mode !== "cells") {
    checkReady();
    return;
  }
  const [w, s, e, n] = state.info.tile_bounds?.length === 4 ? state.info.tile_bounds : state.info.bounds;
  const url = `${mapPath(state.info.name, "/tiles/{z}/{x}/{y}.png")}?layer=${encodeURIComponent(name)}`;
  tiles = L.tileLayer(url, {
    minZoom: state.info.min_zoom,
    maxZoom: 18,
    bounds: L.latLngBounds([s, w], [n, e]),
    opacity: 0.9,
    zIndex: 10,
    className: "pm-cells",
  });
  tiles.on("load", () => {
    state.tilesLoaded = true;
    checkReady();
  });
  tiles.addTo(map);
}

// ---- plan highlight (called by the scenario) -----------------------------------------

async function highlight(plan) {
  if (selectedLayer) {
    selectedLayer.remove();
    selectedLayer = null;
  }
  $("pm-cells-note").hidden = true;
  state.selection = plan;
  if (!plan) {
    drawLegend();
    return;
  }
  const ids = new Set(plan.selected.map((u) => u.id));
  const style = () => ({ color: "#000000", weight: plan.unit === "admin2" ? 4 : 1.5, fill: false, interactive: false });
  let features = [];
  if (plan.unit === "admin2") {
    features = state.admin.features.filter((f) => ids.has(String(f.properties.admin_id)));
  } else if (plan.unit === "cell") {
    const view = map.getBounds();
    const [w, s, e, n] = state.info.bounds;
    const box = [Math.max(w, view.getWest()), Math.max(s, view.getSouth()), Math.min(e, view.getEast()), Math.min(n, view.getNorth())];
    if (box[2] - box[0] > 5 || box[3] - box[1] > 5 || box[2] <= box[0] || box[3] <= box[1]) {
      $("pm-cells-note").hidden = false;
    } else {
      const bbox = box.map((v) => v.toFixed(6)).join(",");
      const r = await call(mapPath(state.info.name, `/cells?bbox=${bbox}`));
      if (r.ok && r.data) features = r.data.features.filter((f) => ids.has(String(f.id)));
      else $("pm-cells-note").hidden = false;
    }
  }
  selectedLayer = L.geoJSON({ type: "FeatureCollection", features }, { style, interactive: false }).addTo(map);
  selectedLayer.eachLayer((layer) => {
    const node = layer.getElement && layer.getElement();
    if (node) {
      node.classList.add("pm-selected");
      node.dataset.id = String(layer.feature.id ?? layer.feature.properties.admin_id);
    }
  });
  drawLegend();
}

// ---- roles and maps -----------------------------------------------------------------

function showRole() {
  $("pm-role").textContent = canSeeCells() ? t("roleAnalyst") : t("rolePublic");
  document.body.dataset.role = state.role;
  scenario.enable(canSeeCells(), state.info);
}

async function loadMaps() {
  let r = await call("/v1/maps");
  if (r.status === 401 && storedKey()) {
    storeKey("");
    $("pm-key").value = "";
    status(t("keyRefused"), true);
    r = await call("/v1/maps");
  } else if (r.ok) {
    status("");
  }
  if (!r.ok || !r.data) {
    status(t("loadFailed", { status: r.status }), true);
    return false;
  }
  state.maps = r.data.maps;
  state.role = r.data.role || "public";
  if (!state.maps.length) {
    status(t("loadFailed", { status: 404 }), true);
    return false;
  }
  const select = $("pm-map-select");
  const current = state.info ? state.info.name : state.maps[0].name;
  select.replaceChildren(...state.maps.map((m) => el("option", { value: m.name, selected: m.name === current }, m.name)));
  $("pm-map-choice").hidden = state.maps.length < 2;
  state.info = state.maps.find((m) => m.name === current) || state.maps[0];
  return true;
}

async function loadMap(fit) {
  const r = await call(mapPath(state.info.name, "/admin"));
  if (!r.ok || !r.data) {
    status(t("loadFailed", { status: r.status }), true);
    return;
  }
  state.admin = r.data;
  if (fit) {
    const [w, s, e, n] = state.info.bounds;
    map.setMinZoom(state.info.min_zoom);
    map.fitBounds([[s, w], [n, e]], { padding: [10, 10] });
  }
  drawTiles();
  drawDistricts();
  drawLegend();
  showRole();
}

async function refresh(fit = false) {
  map.closePopup();
  await highlight(null);
  scenario.clear();
  if (await loadMaps()) await loadMap(fit);
}

// ---- start --------------------------------------------------------------------------

async function start() {
  applyStrings(document);
  document.title = t("title");
  window.povertymapReady = false;
  map = L.map("pm-map", { zoomSnap: 1, attributionControl: true });
  window.povertymap = { map, state };
  map.attributionControl.setPrefix("Leaflet");
  const config = (await call("/web/config.json", { key: "" })).data || {};
  if (config.basemap) {
    L.tileLayer(config.basemap.url, { attribution: config.basemap.attribution || "", zIndex: 0 }).addTo(map);
  }
  scenario = new Scenario({ onPlan: highlight, info: () => state.info });
  $("pm-key").value = storedKey();
  $("pm-key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    storeKey($("pm-key").value.trim());
    refresh();
  });
  $("pm-key-forget").addEventListener("click", () => {
    storeKey("");
    $("pm-key").value = "";
    refresh();
  });
  $("pm-layer").addEventListener("change", (e) => {
    state.choice = e.target.value;
    drawTiles();
    restyle();
  });
  $("pm-fade").addEventListener("change", (e) => {
    state.fade = e.target.checked;
    restyle();
  });
  $("pm-map-select").addEventListener("change", async (e) => {
    state.info = state.maps.find((m) => m.name === e.target.value);
    state.districtsDrawn = false;
    await highlight(null);
    scenario.clear();
    await loadMap(true);
  });
  $("pm-layer").value = state.choice;
  await refresh(true);
}

start();
