// Every word the page shows, by language: translate the page by adding a language here.
// Placeholders are {name}; app.js fills them. index.html names these keys in data-i18n
// (text), data-i18n-label (aria-label) and data-i18n-placeholder attributes.

export const STRINGS = {
  en: {
    title: "Poverty map",
    subtitle: "Where does the money go, and how sure are we?",
    skip: "Skip to the controls",
    mapRegion: "Map of poverty estimates",
    panel: "Map controls and budget scenario",
    mapChoice: "Map",
    loading: "Loading the map…",
    loadFailed: "The map could not be loaded ({status}). Try again later.",

    keyLegend: "Access key",
    keyLabel: "API key (optional)",
    keyPlaceholder: "pmk_…",
    keyUse: "Use key",
    keyForget: "Forget key",
    keyHelp: "Without a key you see the public map. The key is kept in this browser tab only.",
    rolePublic: "Public view: the map's colours and the published district figures; no cell values or scenarios.",
    roleAnalyst: "Analyst view: every value, cell details and budget scenarios.",
    keyRefused: "This key was not accepted (unknown, expired or revoked). Showing the public view.",

    showLegend: "Show on the map",
    layerChoice: "Colour by",
    groupCells: "1 km cells",
    groupDistricts: "Districts",
    layer_cells_estimate: "Cells: estimate",
    layer_cells_poverty: "Cells: share of people in poverty",
    layer_cells_uncertainty: "Cells: uncertainty (interval width)",
    layer_districts_estimate: "Districts: estimate",
    layer_districts_headcount: "Districts: share of people in poverty",
    layer_districts_fh: "Districts: Fay-Herriot estimate",
    fade: "Fade uncertain districts (paler = less certain)",

    legendTitle: "Legend",
    unitsEstimate: "{target}, mean per person",
    unitsHeadcount: "% of people below the poverty line ({line})",
    unitsWidth: "width of the {level} interval, in {target}",
    legendFade: "Paler districts are less certain (higher CV).",
    legendHatch: "Hatched: figures withheld (click for the reason)",
    legendSelected: "Outlined: selected by the scenario",
    legendNoData: "no data",

    district: "District {id}",
    districtNamed: "{name} (district {id})",
    estimate: "Estimate",
    headcount: "Share in poverty",
    fhEstimate: "Fay-Herriot estimate",
    cv: "CV",
    publish: "Publish status",
    publish_yes: "published",
    publish_flagged: "published with a caution",
    publish_suppressed: "withheld",
    withheldWhy: "Figures withheld by the disclosure rules: {reason}",
    withheldPublic: "In the public release this district's figures are withheld: {reason}",
    interval: "{level} interval {lo} – {hi}",
    population: "People",
    cell: "1 km cell {id}",
    cellValue: "Estimate",
    cellPoverty: "Share in poverty",
    noValue: "not available",

    scenarioLegend: "Budget scenario",
    scenarioLocked: "Budget scenarios need an analyst key.",
    budgetKind: "Budget given as",
    budget_share: "share of people (%)",
    budget_people: "number of people",
    budget_money: "money, at a cost per person",
    budgetValue: "Budget",
    costPerPerson: "Cost per person",
    unit: "Target",
    unit_cell: "1 km cells",
    unit_admin2: "whole districts",
    method: "Method",
    method_geographic: "geographic (poorest areas first)",
    method_hybrid: "hybrid (poorest areas, then a proxy means test)",
    uncertaintyRank: "Prefer areas we are surer are poor (uncertainty-aware ranking)",
    run: "Show who is reached",
    running: "Working…",
    scenarioFailed: "The scenario could not be computed: {message}",

    results: "Who this budget reaches",
    areasSelected: "Areas selected",
    peopleCovered: "People covered",
    poorReached: "Expected poor people reached",
    poorRange: "range {lo} – {hi} if every area sat at the end of its interval",
    cost: "Budget used",
    cost_people: "{value} people",
    cost_money: "{value} (money)",
    cost_households: "{value} households",
    selectedList: "Selected areas, best first",
    colRank: "Rank",
    colArea: "Area",
    colPeople: "People",
    colPoor: "Expected poor",
    colCoverage: "Share covered",
    truncated: "Only the first {n} of {total} areas are listed.",
    download: "Download the plan (CSV)",
    cellsTooMany: "Zoom in to outline the selected cells.",

    curveTitle: "Share of poor people reached, by budget",
    curveX: "budget (share of people covered)",
    curveY: "share of poor reached",
    curveMap: "this map",
    curveNightlights: "nightlights only",
    curveLottery: "lottery (no targeting)",
    curvePlan: "this scenario",
    curveNote: "Judged by this map's own estimates, which favours this map; the run's report scores each rule against surveyed households.",

    helpTitle: "How to read this map",
    help1: "Colours show the estimated welfare or the share of people below the poverty line, for 1 km cells or for districts. The legend gives the units.",
    help2: "Every number comes with a 90% interval: the true value lies in it 9 times out of 10. Paler districts and the 'uncertainty' layer show where the map is less sure.",
    help3: "Hatched districts have figures withheld because they are not precise enough to publish; click one to see why.",
    help4: "With an analyst key, try a budget: the map outlines the areas a geographic programme would reach first, and the panel shows how many poor people it is expected to reach compared with a lottery or a nightlights-only map.",
  },
};

const lang = (navigator.language || "en").slice(0, 2);
const table = STRINGS[lang] || STRINGS.en;

/** The text of `key` with {placeholders} filled from `vars`. */
export function t(key, vars = {}) {
  const text = table[key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

/** Fill every data-i18n* attribute under `root`. */
export function applyStrings(root) {
  root.documentElement && (root.documentElement.lang = STRINGS[lang] ? lang : "en");
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-label]")) {
    el.setAttribute(el.tagName === "OPTGROUP" ? "label" : "aria-label", t(el.dataset.i18nLabel));
  }
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    el.setAttribute("placeholder", t(el.dataset.i18nPlaceholder));
  }
}

/** The number formats of the page's language. */
export const LOCALE = STRINGS[lang] ? lang : "en";
