// The budget scenario panel: builds a POST /v1/maps/{map}/target request from the form,
// shows the answer (people covered, expected poor reached with its range, budget used,
// selected areas, the targeting curve) and offers the plan as CSV.

import { call, mapPath } from "./api.js";
import * as fmt from "./format.js";
import { t } from "./strings.js";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const DEFAULTS = { share: "30", people: "5000", money: "100000" };

/** The budget string of the API from the form ("30%", "5000", "100000 @ 25/person"). */
export function budgetString(kind, value, cost) {
  const v = Number(value);
  if (!Number.isFinite(v) || v <= 0) return null;
  if (kind === "share") return v > 100 ? null : `${v}%`;
  if (kind === "people") return `${Math.round(v)}`;
  const c = Number(cost);
  if (!Number.isFinite(c) || c <= 0) return null;
  return `${v} @ ${c}/person`;
}

/** The plan's rows as CSV text (one row per selected unit, best first). */
export function planCsv(answer) {
  const cols = ["rank", "id", "coverage", "population", "expected_poor", "cost"];
  const cell = (v) => {
    if (v === null || v === undefined) return "";
    const s = String(v);
    return /[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
  };
  const lines = [["unit", ...cols].join(",")];
  for (const u of answer.selected) lines.push([answer.summary.unit, ...cols.map((c) => cell(u[c]))].join(","));
  return `${lines.join("\n")}\n`;
}

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== null) node.textContent = text;
  return node;
}

export class Scenario {
  constructor({ onPlan, info }) {
    this.onPlan = onPlan;
    this.info = info;
    this.answer = null;
    this.form = $("pm-scenario");
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.run();
    });
    for (const radio of this.form.querySelectorAll('input[name="kind"]')) {
      radio.addEventListener("change", () => this.kindChanged());
    }
    $("pm-download").addEventListener("click", () => this.download());
  }

  kind() {
    return this.form.querySelector('input[name="kind"]:checked').value;
  }

  kindChanged() {
    const kind = this.kind();
    $("pm-cost-field").hidden = kind !== "money";
    $("pm-budget").value = DEFAULTS[kind];
    $("pm-budget").max = kind === "share" ? "100" : "";
  }

  /** Open the panel to roles that may target (analyst and admin). */
  enable(allowed, info) {
    $("pm-scenario-fields").disabled = !allowed;
    $("pm-scenario-locked").hidden = allowed;
    const hybrid = $("pm-method-hybrid");
    const households = Boolean(info && info.household_methods);
    hybrid.hidden = !households;
    hybrid.disabled = !households;
    if (!households) $("pm-method").value = "geographic";
    if (!allowed) this.clear();
  }

  clear() {
    this.answer = null;
    $("pm-results").hidden = true;
  }

  request() {
    const budget = budgetString(this.kind(), $("pm-budget").value, $("pm-cost").value);
    if (!budget) return null;
    return {
      budget,
      unit: $("pm-unit").value,
      method: $("pm-method").value,
      uncertainty: $("pm-uncertainty").checked,
      curve: true,
      limit: 10000,
    };
  }

  async run() {
    const body = this.request();
    const statusEl = $("pm-status");
    statusEl.classList.remove("pm-error");
    if (!body) {
      statusEl.textContent = t("scenarioFailed", { message: t("budgetValue") });
      statusEl.classList.add("pm-error");
      return;
    }
    const button = $("pm-run");
    button.disabled = true;
    button.textContent = t("running");
    const r = await call(mapPath(this.info().name, "/target"), { method: "POST", body });
    button.disabled = false;
    button.textContent = t("run");
    if (!r.ok || !r.data) {
      const message = r.data?.error?.message || String(r.status);
      statusEl.textContent = t("scenarioFailed", { message });
      statusEl.classList.add("pm-error");
      return;
    }
    statusEl.textContent = "";
    this.answer = r.data;
    this.show(r.data);
    const unit = r.data.summary.method === "geographic" ? r.data.summary.unit : null;
    await this.onPlan({ unit, selected: r.data.selected });
    document.body.dataset.planVersion = String((Number(document.body.dataset.planVersion) || 0) + 1);
  }

  show(a) {
    const s = a.summary;
    const put = (id, value, text) => {
      const out = $(id);
      out.value = text;
      out.textContent = text;
      out.dataset.value = value === null || value === undefined ? "" : String(value);
    };
    put("pm-out-units", s.units_selected, fmt.int(s.units_selected));
    put("pm-out-people", s.population_covered, fmt.int(s.population_covered));
    put("pm-out-poor", s.expected_poor_covered, fmt.int(s.expected_poor_covered));
    const range = $("pm-out-poor-range");
    range.textContent =
      s.expected_poor_lower !== undefined && s.expected_poor_upper !== undefined
        ? t("poorRange", { lo: fmt.int(s.expected_poor_lower), hi: fmt.int(s.expected_poor_upper) })
        : "";
    const measure = s.measure === "money" ? "money" : s.measure === "households" ? "households" : "people";
    put("pm-out-cost", s.spent, t(`cost_${measure}`, { value: fmt.int(s.spent) }));
    const trunc = $("pm-truncated");
    trunc.hidden = !a.truncated;
    trunc.textContent = a.truncated ? t("truncated", { n: a.selected.length, total: a.selected_total }) : "";
    const body = $("pm-selected");
    body.replaceChildren(
      ...a.selected.map((u) => {
        const tr = document.createElement("tr");
        tr.dataset.id = u.id;
        const name = s.unit === "admin2" && s.method === "geographic" ? t("district", { id: u.id }) : u.id;
        for (const text of [fmt.int(u.rank), name, fmt.int(u.population), fmt.num(u.expected_poor, 1), fmt.pct(u.coverage)]) {
          const td = document.createElement("td");
          td.textContent = text;
          tr.append(td);
        }
        return tr;
      }),
    );
    this.drawCurve(a);
    $("pm-results").hidden = false;
  }

  drawCurve(a) {
    const box = $("pm-curve");
    box.replaceChildren();
    const keys = $("pm-curve-keys");
    keys.replaceChildren();
    const curve = a.curve;
    if (!curve) return;
    const W = 320;
    const H = 220;
    const m = { l: 40, r: 10, t: 10, b: 34 };
    const x = (v) => m.l + v * (W - m.l - m.r);
    const y = (v) => H - m.b - v * (H - m.t - m.b);
    for (const v of [0, 0.25, 0.5, 0.75, 1]) {
      box.append(svg("line", { class: "pm-grid", x1: x(0), x2: x(1), y1: y(v), y2: y(v) }));
      box.append(svg("text", { x: m.l - 4, y: y(v) + 3, "text-anchor": "end" }, fmt.pct(v)));
      box.append(svg("text", { x: x(v), y: H - m.b + 12, "text-anchor": "middle" }, fmt.pct(v)));
    }
    box.append(svg("line", { class: "pm-axis", x1: x(0), x2: x(1), y1: y(0), y2: y(0) }));
    box.append(svg("line", { class: "pm-axis", x1: x(0), x2: x(0), y1: y(0), y2: y(1) }));
    box.append(svg("text", { x: (x(0) + x(1)) / 2, y: H - 4, "text-anchor": "middle" }, t("curveX")));
    box.append(svg("text", { x: 10, y: y(0.5), "text-anchor": "middle", transform: `rotate(-90 10 ${y(0.5)})` }, t("curveY")));
    const lines = [
      ["lottery", "curveLottery"],
      ["nightlights", "curveNightlights"],
      ["map", "curveMap"],
    ];
    for (const [field, label] of lines) {
      const pts = curve.points.filter((p) => p[field] !== null && p[field] !== undefined);
      if (!pts.length) continue;
      const coords = [[0, 0], ...pts.map((p) => [p.budget_share, p[field]])];
      box.append(
        svg("polyline", {
          class: `pm-line-${field}`,
          "data-line": field,
          points: coords.map(([u, v]) => `${x(u).toFixed(1)},${y(v).toFixed(1)}`).join(" "),
        }),
      );
      const li = document.createElement("li");
      const sw = document.createElement("span");
      sw.className = `pm-swatch pm-swatch-line pm-line-${field}`;
      sw.setAttribute("aria-hidden", "true");
      li.append(sw, document.createTextNode(t(label)));
      keys.append(li);
    }
    const s = a.summary;
    if (curve.population > 0 && curve.expected_poor > 0 && s.population_covered != null && s.expected_poor_covered != null) {
      const px = s.population_covered / curve.population;
      const py = s.expected_poor_covered / curve.expected_poor;
      box.append(svg("circle", { class: "pm-plan-point", cx: x(Math.min(px, 1)), cy: y(Math.min(py, 1)), r: 5 }));
      const li = document.createElement("li");
      const sw = document.createElement("span");
      sw.className = "pm-swatch pm-plan-swatch";
      sw.setAttribute("aria-hidden", "true");
      li.append(sw, document.createTextNode(`${t("curvePlan")}: ${fmt.pct(px)} → ${fmt.pct(py)}`));
      keys.append(li);
    }
  }

  download() {
    if (!this.answer) return;
    const blob = new Blob([planCsv(this.answer)], { type: "text/csv" });
    const url = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = url;
    a.download = `plan-${this.answer.map}-${this.answer.summary.unit}.csv`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }
}
