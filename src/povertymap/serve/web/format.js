// Number formats of the page's language (one place, so the tests and the page agree).
import { LOCALE, t } from "./strings.js";

const cache = new Map();
function nf(options) {
  const k = JSON.stringify(options);
  if (!cache.has(k)) cache.set(k, new Intl.NumberFormat(LOCALE, options));
  return cache.get(k);
}
const missing = (v) => v === null || v === undefined || Number.isNaN(v);

/** A value with `digits` decimals (2 by default). */
export function num(v, digits = 2) {
  if (missing(v)) return t("noValue");
  return nf({ minimumFractionDigits: digits, maximumFractionDigits: digits }).format(v);
}
/** A whole number (people, areas). */
export function int(v) {
  if (missing(v)) return t("noValue");
  return nf({ maximumFractionDigits: 0 }).format(Math.round(v));
}
/** A share as a percentage. */
export function pct(v, digits = 0) {
  if (missing(v)) return t("noValue");
  return nf({ style: "percent", minimumFractionDigits: digits, maximumFractionDigits: digits }).format(v);
}
/** The interval's level, e.g. "90%". */
export function level(v) {
  return pct(v ?? 0.9, 0);
}
