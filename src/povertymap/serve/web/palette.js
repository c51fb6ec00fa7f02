// Colour ramps, colour-blind safe and perceptually uniform, sampled from matplotlib at 11
// stops; the names are those of the service's tile layers (GET /v1/maps: colormaps), so a
// cell tile and a district of the same value get the same colour.

export const RAMPS = {
  viridis: ["#440154", "#482475", "#414487", "#355f8d", "#2a788e", "#21918c", "#22a884", "#44bf70", "#7ad151", "#bddf26", "#fde725"],
  cividis: ["#00224e", "#083370", "#35456c", "#4f576c", "#666970", "#7d7c78", "#948e77", "#aea371", "#c8b866", "#e5cf52", "#fee838"],
  magma_r: ["#fcfdbf", "#fecf92", "#fe9f6d", "#f7705c", "#de4968", "#b5367a", "#8c2981", "#641a80", "#3b0f70", "#140e36", "#000004"],
};

function rgb(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

/** The colour of `value` on ramp `name` stretched over [lo, hi]. */
export function colour(name, value, lo, hi) {
  const stops = RAMPS[name] || RAMPS.viridis;
  const f = hi > lo ? Math.min(Math.max((value - lo) / (hi - lo), 0), 1) : 0.5;
  const x = f * (stops.length - 1);
  const i = Math.min(Math.floor(x), stops.length - 2);
  const a = rgb(stops[i]);
  const b = rgb(stops[i + 1]);
  const w = x - i;
  const mix = a.map((c, k) => Math.round(c + (b[k] - c) * w));
  return `rgb(${mix[0]}, ${mix[1]}, ${mix[2]})`;
}
