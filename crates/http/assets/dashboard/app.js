// The pg-analytics dashboard: plain JavaScript over the service's own API, no build step.
// Every number on a page comes from an API response; every failure shows the API's message.
// The page state (page, report, range, window, grouping, filters) lives in the URL's hash, so
// a view can be shared; a pasted key lives in this tab's sessionStorage only.
"use strict";

// ---------------------------------------------------------------------------------------------
// DOM helpers: text always goes in as text, never as markup.

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const main = () => document.getElementById("main");
const number = new Intl.NumberFormat("en");

// ---------------------------------------------------------------------------------------------
// Keys: one key per tab, sent as the header of its kind.

const KEY_ITEM = "pg-analytics.key";

function credentials() {
  try {
    const stored = JSON.parse(sessionStorage.getItem(KEY_ITEM) || "null");
    return stored && stored.key ? stored : null;
  } catch {
    return null;
  }
}

function authHeaders() {
  const held = credentials();
  if (!held) return {};
  return held.kind === "management" ? { "X-Management-Key": held.key } : { "X-API-Key": held.key };
}

function showKeyState() {
  const held = credentials();
  document.getElementById("key-state").textContent = held
    ? `using ${held.kind === "management" ? "the management key" : "an API key"}`
    : "public view (default tenant)";
}

// ---------------------------------------------------------------------------------------------
// The API.

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, params = {}, init = {}) {
  const url = new URL(`/api/v1${path}`, window.location.origin);
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const headers = { Accept: "application/json", ...authHeaders(), ...(init.headers || {}) };
  let response;
  try {
    response = await fetch(url, { ...init, headers });
  } catch (error) {
    throw new ApiError(0, `the server did not answer (${error.message})`);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const message = body && body.error && body.error.message;
    throw new ApiError(response.status, message || `${response.status} ${response.statusText}`);
  }
  return body;
}

// Every row of a paged read, up to `cap`.
async function allRows(path, params, cap = 1000) {
  const rows = [];
  let last = null;
  for (let offset = 0; offset < cap; offset += 100) {
    last = await api(path, { ...params, limit: 100, offset });
    rows.push(...last.data.rows);
    if (rows.length >= last.data.total_rows || last.data.rows.length === 0) break;
  }
  return { rows, last };
}

function errorBox(error) {
  return el("p", { class: "error", role: "alert" }, error.message || String(error));
}

// ---------------------------------------------------------------------------------------------
// Dates, in UTC as the API counts them.

const DAY_MS = 86_400_000;
const isoDay = (date) => date.toISOString().slice(0, 10);
const today = () => isoDay(new Date());
const parseDay = (text) => new Date(`${text}T00:00:00Z`);
const addDays = (text, days) => isoDay(new Date(parseDay(text).getTime() + days * DAY_MS));
const daysBetween = (from, to) => Math.round((parseDay(to) - parseDay(from)) / DAY_MS) + 1;
const validDay = (text) => /^\d{4}-\d{2}-\d{2}$/.test(text || "") && !Number.isNaN(parseDay(text));

function range(params) {
  const to = validDay(params.get("to")) ? params.get("to") : today();
  const from = validDay(params.get("from")) ? params.get("from") : addDays(to, -29);
  return { from, to };
}

function ago(iso) {
  if (!iso) return "never built";
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 60) return `updated ${seconds} s ago`;
  if (seconds < 3600) return `updated ${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `updated ${Math.round(seconds / 3600)} h ago`;
  return `updated ${Math.round(seconds / 86400)} days ago`;
}

// "updated 2 min ago", and a badge when some event of the range is not counted yet.
function freshness(source) {
  const refreshed = source.last_refreshed_at;
  const stale = source.stale;
  const lag = source.lag_seconds;
  return el(
    "span",
    { class: "freshness", "data-stale": stale ? "true" : "false" },
    ago(refreshed),
    stale ? el("span", { class: "badge", title: lag ? `oldest uncounted change ${lag} s ago` : "" }, "stale") : null,
  );
}

// ---------------------------------------------------------------------------------------------
// URL state: #/<page>?<parameters>.

function currentRoute() {
  const hash = window.location.hash.replace(/^#\/?/, "");
  const [page, query] = hash.split("?");
  return { page: page || "overview", params: new URLSearchParams(query || "") };
}

function go(page, params) {
  const query = new URLSearchParams(
    Object.entries(params).filter(([, value]) => value !== undefined && value !== null && value !== ""),
  ).toString();
  window.location.hash = `#/${page}${query ? `?${query}` : ""}`;
}

// ---------------------------------------------------------------------------------------------
// Charts: a line chart (uPlot) for periods, bars for top-N.

const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];

function lineChart(days, series) {
  const holder = el("div", { class: "chart", role: "img", "aria-label": series.map((s) => s.label).join(", ") });
  if (days.length === 0) return holder;
  // A bucket is a day (YYYY-MM-DD) or, for the hour window, a timestamp.
  const xs = days.map((day) => (day.includes("T") ? Date.parse(day) : parseDay(day).getTime()) / 1000);
  const draw = () => {
    holder.replaceChildren();
    const width = Math.max(280, holder.clientWidth || 600);
    new uPlot(
      {
        width,
        height: 260,
        series: [
          {},
          ...series.map((s, i) => ({ label: s.label, stroke: PALETTE[i % PALETTE.length], width: 2, points: { show: days.length < 60 } })),
        ],
        axes: [{}, { size: 60, values: (_, ticks) => ticks.map((t) => number.format(t)) }],
        scales: { x: { time: true } },
        legend: { show: true },
      },
      [xs, ...series.map((s) => s.values)],
      holder,
    );
  };
  requestAnimationFrame(draw);
  return holder;
}

function barChart(labels, values, measure) {
  const top = Math.max(1, ...values);
  return el(
    "div",
    { class: "bars", role: "img", "aria-label": `${measure} by value` },
    labels.map((label, i) =>
      el(
        "div",
        { class: "bar" },
        el("span", { class: "bar-label", title: label }, label),
        el("span", { class: "bar-track" }, el("span", { class: "bar-fill", style: `width: ${(100 * values[i]) / top}%` })),
        el("span", { class: "bar-value" }, number.format(values[i])),
      ),
    ),
  );
}

function table(columns, rows) {
  if (rows.length === 0) return el("p", { class: "empty" }, "No data for this range.");
  return el(
    "div",
    { class: "table-wrap" },
    el(
      "table",
      {},
      el("thead", {}, el("tr", {}, columns.map((c) => el("th", {}, c)))),
      el(
        "tbody",
        {},
        rows.map((row) =>
          el(
            "tr",
            {},
            columns.map((c) => {
              const value = row[c];
              return el("td", { class: typeof value === "number" ? "num" : "" }, value === null || value === undefined ? "—" : typeof value === "number" ? number.format(value) : value);
            }),
          ),
        ),
      ),
    ),
  );
}

function csv(columns, rows) {
  const quote = (value) => {
    const text = value === null || value === undefined ? "" : String(value);
    return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
  };
  return [columns.map(quote).join(","), ...rows.map((row) => columns.map((c) => quote(row[c])).join(","))].join("\r\n");
}

function download(name, text) {
  const link = el("a", { href: URL.createObjectURL(new Blob([text], { type: "text/csv" })), download: name });
  document.body.append(link);
  link.click();
  link.remove();
}

function panel(title, ...children) {
  return el("section", { class: "panel" }, el("h2", {}, title), ...children);
}

// A panel filled by `load`, showing the API's message if it fails.
function loadingPanel(title, load) {
  const body = el("div", { class: "panel-body" }, el("p", { class: "loading" }, "Loading…"));
  const section = panel(title, body);
  load()
    .then((children) => body.replaceChildren(...[children].flat()))
    .catch((error) => body.replaceChildren(errorBox(error)));
  return section;
}

// The range and window controls every data page shares.
function rangeControls(page, params, windows = ["day", "week", "month"], fallback = windows[0]) {
  const { from, to } = range(params);
  const window = windows.includes(params.get("window")) ? params.get("window") : fallback;
  const form = el(
    "form",
    {
      class: "controls",
      onsubmit: (event) => {
        event.preventDefault();
        const data = new FormData(event.target);
        const next = Object.fromEntries(params.entries());
        go(page, { ...next, from: data.get("from"), to: data.get("to"), window: data.get("window") });
      },
    },
    el("label", {}, "From ", el("input", { type: "date", name: "from", value: from, required: true })),
    el("label", {}, "To ", el("input", { type: "date", name: "to", value: to, required: true })),
    el(
      "label",
      {},
      "Window ",
      el("select", { name: "window" }, windows.map((w) => el("option", { value: w, selected: w === window }, w))),
    ),
    el("button", { type: "submit" }, "Apply"),
  );
  return { form, from, to, window };
}

// ---------------------------------------------------------------------------------------------
// Overview: totals against the previous period, the series, top paths and top events.

function change(now, before) {
  if (!before) return el("span", { class: "change" }, "no previous data");
  const percent = ((now - before) / before) * 100;
  const sign = percent > 0 ? "+" : "";
  return el("span", { class: `change ${percent >= 0 ? "up" : "down"}` }, `${sign}${percent.toFixed(1)}% vs previous period`);
}

function overview(params) {
  const controls = rangeControls("overview", params);
  const { from, to, window } = controls;
  const days = daysBetween(from, to);
  const previous = { date: addDays(from, -days), date_to: addDays(from, -1) };
  const stats = api("/stats", { date: from, date_to: to, limit: 10 });

  const totals = loadingPanel("Totals", async () => {
    const now = await stats;
    let before = null;
    try {
      before = (await api("/stats", { ...previous, limit: 1 })).data;
    } catch {
      before = null; // A previous period before retention has no totals to compare.
    }
    const card = (label, value, earlier, testId) =>
      el(
        "div",
        { class: "card" },
        el("div", { class: "card-label" }, label),
        el("div", { class: "card-value", "data-testid": testId }, number.format(value)),
        change(value, earlier),
      );
    return [
      el(
        "div",
        { class: "cards" },
        card("Events", now.data.total_views, before && before.total_views, "total-events"),
        card("Unique users", now.data.unique_users, before && before.unique_users, "unique-users"),
      ),
      freshness(now.meta),
    ];
  });

  const series = loadingPanel(`Events and unique users by ${window}`, async () => {
    const { rows, last } = await allRows("/reports/traffic/run", {
      window,
      date_from: from,
      date_to: to,
      group_by: "period",
      order: "period",
    });
    if (rows.length === 0) return el("p", { class: "empty" }, "No data for this range.");
    const dates = rows.map((r) => r.bucket_date);
    return [
      lineChart(dates, [
        { label: "events", values: rows.map((r) => r.events) },
        { label: "unique users", values: rows.map((r) => r.unique_users) },
      ]),
      freshness(last.data),
    ];
  });

  const paths = loadingPanel("Top paths", async () => {
    const now = await stats;
    return [table(["path", "views", "unique_users"], now.data.top_paths), freshness(now.meta)];
  });

  const events = loadingPanel("Top events", async () => {
    const result = await api("/reports/events-by-name/run", {
      date_from: from,
      date_to: to,
      group_by: "event_name",
      limit: 10,
    });
    return [table(["event_name", "events", "unique_users"], result.data.rows), freshness(result.data)];
  });

  main().replaceChildren(
    el("h1", {}, "Overview"),
    controls.form,
    totals,
    series,
    el("div", { class: "columns" }, paths, events),
  );
}

// ---------------------------------------------------------------------------------------------
// Reports: the catalog, and any report run with its controls, chart, table and CSV.

async function catalog(params) {
  const search = params.get("search") || "";
  const offset = Math.max(0, Number.parseInt(params.get("offset") || "0", 10) || 0);
  const form = el(
    "form",
    {
      class: "controls",
      onsubmit: (event) => {
        event.preventDefault();
        go("reports", { search: new FormData(event.target).get("search") });
      },
    },
    el("input", { type: "search", name: "search", value: search, placeholder: "Search reports", "aria-label": "Search reports" }),
    el("button", { type: "submit" }, "Search"),
  );
  main().replaceChildren(el("h1", {}, "Reports"), form);
  try {
    const listing = await api("/reports", { search, limit: 20, offset });
    const total = listing.meta.pagination.total;
    const list = el(
      "ul",
      { class: "catalog" },
      listing.data.map((report) =>
        el(
          "li",
          {},
          el("a", { href: `#/reports?report=${encodeURIComponent(report.slug)}` }, report.name || report.slug),
          el("span", { class: "slug" }, report.slug),
          el("p", {}, report.description || ""),
        ),
      ),
    );
    const pager = el(
      "div",
      { class: "pager" },
      el("button", { disabled: offset === 0, onclick: () => go("reports", { search, offset: Math.max(0, offset - 20) }) }, "Previous"),
      el("span", {}, total === 0 ? "no reports" : `${offset + 1}–${Math.min(offset + 20, total)} of ${total}`),
      el("button", { disabled: offset + 20 >= total, onclick: () => go("reports", { search, offset: offset + 20 }) }, "Next"),
    );
    main().append(listing.data.length ? list : el("p", { class: "empty" }, "No report matches."), pager);
  } catch (error) {
    main().append(errorBox(error));
  }
}

// What a report can be asked: its windows, groupings and filters, from its definition.
function shapeOf(definition) {
  if (definition.measures) {
    return {
      defined: true,
      windows: definition.windows.map((w) => w.window),
      defaultWindow: (definition.windows.find((w) => w.is_default) || definition.windows[0]).window,
      groupings: ["period", ...definition.dimensions.map((d) => d.name)],
      filters: definition.dimensions.map((d) => d.name),
      measures: definition.measures.map((m) => m.name),
    };
  }
  return {
    defined: false,
    windows: definition.allowed_windows.map((w) => w.window),
    defaultWindow: definition.default_window,
    groupings: definition.supported_filters.breakdown,
    filters: definition.supported_filters.filters,
    measures: ["event_count"],
  };
}

async function reportView(params) {
  const slug = params.get("report");
  main().replaceChildren(el("h1", {}, el("a", { href: "#/reports" }, "Reports"), " / ", slug));
  let definition;
  try {
    definition = (await api(`/reports/${encodeURIComponent(slug)}`)).data;
  } catch (error) {
    main().append(errorBox(error));
    return;
  }
  const shape = shapeOf(definition);
  const controls = rangeControls("reports", params, shape.windows, shape.defaultWindow);
  const { from, to, window } = controls;
  // Built-in reports take one breakdown; defined ones a set of groupings.
  const grouping = shape.defined
    ? (params.get("group_by") ?? shape.groupings.join(",")).split(",").filter((g) => shape.groupings.includes(g))
    : [shape.groupings.includes(params.get("breakdown")) ? params.get("breakdown") : shape.groupings[0]];
  const filters = Object.fromEntries(shape.filters.map((f) => [f, params.get(`f.${f}`) || ""]));
  const extra = el(
    "form",
    {
      class: "controls",
      onsubmit: (event) => {
        event.preventDefault();
        const data = new FormData(event.target);
        const next = Object.fromEntries([...params.entries()].filter(([name]) => !name.startsWith("f.")));
        if (shape.defined) next.group_by = data.getAll("group").join(",");
        else next.breakdown = data.get("breakdown");
        for (const f of shape.filters) next[`f.${f}`] = data.get(`f.${f}`);
        go("reports", next);
      },
    },
    shape.defined
      ? el(
          "fieldset",
          {},
          el("legend", {}, "Group by"),
          shape.groupings.map((g) => el("label", {}, el("input", { type: "checkbox", name: "group", value: g, checked: grouping.includes(g) }), ` ${g}`)),
        )
      : el("label", {}, "Breakdown ", el("select", { name: "breakdown" }, shape.groupings.map((g) => el("option", { value: g, selected: g === grouping[0] }, g)))),
    shape.filters.map((f) => el("label", {}, `${f} `, el("input", { name: `f.${f}`, value: filters[f], placeholder: "any" }))),
    el("button", { type: "submit" }, "Run"),
  );
  const query = { window, date_from: from, date_to: to };
  if (shape.defined) query.group_by = grouping.join(",");
  else query.breakdown = grouping[0];
  for (const [f, value] of Object.entries(filters)) if (value) query[f] = value;

  const result = el("div", {}, el("p", { class: "loading" }, "Loading…"));
  main().append(el("p", { class: "description" }, definition.description || ""), controls.form, extra, result);
  try {
    const { rows, last } = await allRows(`/reports/${encodeURIComponent(slug)}/run`, query);
    const columns = rows.length ? Object.keys(rows[0]) : [];
    const measure = shape.measures.find((m) => columns.includes(m)) || "event_count";
    const byPeriod = columns.includes("bucket_date");
    let chart;
    if (rows.length === 0) chart = null;
    else if (byPeriod) {
      // One series per combination of the other grouped values (the eight largest).
      const keys = columns.filter((c) => c !== "bucket_date" && !shape.measures.includes(c));
      const label = (row) => (keys.length ? keys.map((k) => row[k] ?? "—").join(" · ") : measure);
      const dates = [...new Set(rows.map((r) => r.bucket_date))].sort();
      const totals = new Map();
      for (const row of rows) totals.set(label(row), (totals.get(label(row)) || 0) + row[measure]);
      const kept = [...totals.entries()].sort((a, b) => b[1] - a[1]).slice(0, 8).map(([name]) => name);
      chart = lineChart(
        dates,
        kept.map((name) => ({
          label: name,
          values: dates.map((d) => {
            const row = rows.find((r) => r.bucket_date === d && label(r) === name);
            return row ? row[measure] : null;
          }),
        })),
      );
    } else {
      const keys = columns.filter((c) => !shape.measures.includes(c));
      const top = rows.slice(0, 20);
      chart = barChart(top.map((r) => (keys.length ? keys.map((k) => r[k] ?? "—").join(" · ") : "all")), top.map((r) => r[measure]), measure);
    }
    result.replaceChildren(
      el("div", { class: "result-head" }, freshness(last.data), rows.length ? el("button", { onclick: () => download(`${slug}-${from}-${to}.csv`, csv(columns, rows)) }, "Download CSV") : null),
      chart,
      table(columns, rows),
    );
  } catch (error) {
    result.replaceChildren(errorBox(error));
  }
}

// ---------------------------------------------------------------------------------------------
// Operations: recomputes, their live status, and the audit trail (a manage key).

let polling = null;

async function operations(params) {
  main().replaceChildren(el("h1", {}, "Operations"));
  if (!credentials()) {
    main().append(el("p", { class: "empty" }, "Enter the management key, or an API key with the manage scope, to see and trigger runs."));
    return;
  }
  const { from, to } = range(params);
  const message = el("div", {});
  const trigger = el(
    "form",
    {
      class: "controls",
      onsubmit: async (event) => {
        event.preventDefault();
        const data = new FormData(event.target);
        try {
          const run = await api("/recomputations", {}, {
            method: "POST",
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify({
              report_slug: data.get("report"),
              window: data.get("window"),
              date_from: data.get("from"),
              date_to: data.get("to"),
              mode: data.get("mode"),
            }),
          });
          message.replaceChildren(el("p", { class: "ok" }, `Run ${run.data.id} queued.`));
          refreshRuns();
        } catch (error) {
          message.replaceChildren(errorBox(error));
        }
      },
    },
    el("label", {}, "Report ", el("input", { name: "report", value: params.get("report") || "traffic", required: true })),
    el("label", {}, "Window ", el("select", { name: "window" }, ["day", "week", "month", "hour"].map((w) => el("option", { value: w }, w)))),
    el("label", {}, "From ", el("input", { type: "date", name: "from", value: from, required: true })),
    el("label", {}, "To ", el("input", { type: "date", name: "to", value: to, required: true })),
    el("label", {}, "Mode ", el("select", { name: "mode" }, el("option", { value: "full" }, "full"), el("option", { value: "incremental" }, "incremental"))),
    el("button", { type: "submit" }, "Recompute"),
  );
  const runs = el("div", {}, el("p", { class: "loading" }, "Loading…"));
  const detail = el("div", {});
  const action = params.get("action") || "";
  const audit = el("div", {}, el("p", { class: "loading" }, "Loading…"));
  const auditFilter = el(
    "form",
    {
      class: "controls",
      onsubmit: (event) => {
        event.preventDefault();
        go("operations", { ...Object.fromEntries(params.entries()), action: new FormData(event.target).get("action") });
      },
    },
    el(
      "select",
      { name: "action", "aria-label": "Action" },
      el("option", { value: "" }, "every action"),
      ["recompute.triggered", "recompute.completed", "recompute.failed", "source.created", "report.created", "report.updated", "report.deleted", "snapshots.expired", "events.purged"].map((a) =>
        el("option", { value: a, selected: a === action }, a),
      ),
    ),
    el("button", { type: "submit" }, "Filter"),
  );
  main().append(panel("Recompute", trigger, message), panel("Runs", runs, detail), panel("Audit trail", auditFilter, audit));

  async function showRun(id) {
    try {
      const run = (await api(`/recomputations/${encodeURIComponent(id)}`)).data;
      detail.replaceChildren(el("h3", {}, `Run ${run.id}`), el("pre", { class: "summary" }, JSON.stringify(run, null, 2)));
    } catch (error) {
      detail.replaceChildren(errorBox(error));
    }
  }

  async function refreshRuns() {
    clearTimeout(polling);
    try {
      const listing = await api("/recomputations", { limit: 20 });
      const rows = listing.data.map((run) => ({
        id: run.id,
        report: run.report_slug,
        window: run.window,
        mode: run.mode,
        range: `${run.date_from} … ${run.date_to}`,
        status: run.status,
        requested_by: run.requested_by,
        requested_at: run.requested_at,
      }));
      const rendered = table(["report", "window", "mode", "range", "status", "requested_by", "requested_at"], rows);
      rendered.querySelectorAll("tbody tr").forEach((tr, i) => {
        tr.classList.add("clickable");
        tr.dataset.status = rows[i].status;
        tr.dataset.runId = rows[i].id;
        tr.addEventListener("click", () => showRun(rows[i].id));
      });
      runs.replaceChildren(rendered);
      // Live status: poll while a run is still pending or running, and this page is shown.
      if (rows.some((r) => r.status === "pending" || r.status === "running") && currentRoute().page === "operations") {
        polling = setTimeout(refreshRuns, 1000);
      }
    } catch (error) {
      runs.replaceChildren(errorBox(error));
    }
  }

  refreshRuns();
  try {
    const entries = await api("/audit-entries", { action, limit: 50 });
    audit.replaceChildren(
      table(
        ["created_at", "actor", "action", "resource_id", "metadata"],
        entries.data.map((entry) => ({ ...entry, metadata: JSON.stringify(entry.metadata) })),
      ),
    );
  } catch (error) {
    audit.replaceChildren(errorBox(error));
  }
}

// ---------------------------------------------------------------------------------------------

function render() {
  clearTimeout(polling);
  const { page, params } = currentRoute();
  for (const link of document.querySelectorAll("nav a[data-page]")) {
    link.classList.toggle("active", link.dataset.page === page);
  }
  if (page === "reports") return params.get("report") ? reportView(params) : catalog(params);
  if (page === "operations") return operations(params);
  return overview(params);
}

document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = document.getElementById("key").value.trim();
  if (key) {
    sessionStorage.setItem(KEY_ITEM, JSON.stringify({ kind: document.getElementById("key-kind").value, key }));
  }
  document.getElementById("key").value = "";
  showKeyState();
  render();
});
document.getElementById("key-clear").addEventListener("click", () => {
  sessionStorage.removeItem(KEY_ITEM);
  showKeyState();
  render();
});
window.addEventListener("hashchange", render);
showKeyState();
render();
