// The managers' page: plain JavaScript, no build step. Charts by the vendored uPlot (static/vendor).
// Every view comes from /v1/views/*; the filters live in the query string, so a link shares the view.
// What each chart drew is kept in window.__insights.drawn[chartId] (and the chart's data-series), for tests.
"use strict";
(function () {
  const FILTERS = ["channel", "campaign", "source", "team", "rep", "since", "until"];
  const PAGE_KEYS = [...FILTERS, "by", "unit", "q", "status", "page", "lead"];
  const COLORS = ["#1f5fbf", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0e7490", "#4d5563"];
  const state = Object.fromEntries(PAGE_KEYS.map((k) => [k, ""]));
  const charts = {};
  window.__insights = { drawn: {}, loads: 0, errors: [] };
  const $ = (sel, root = document) => root.querySelector(sel);
  const fmtPct = (v) => (v === null || v === undefined ? "–" : `${Math.round(v * 1000) / 10}%`);

  function fmtDuration(s) {
    if (s === null || s === undefined) return "–";
    const a = Math.abs(s);
    const text = a < 90 ? `${Math.round(a)} s` : a < 5400 ? `${Math.round(a / 60)} min`
      : a < 172800 ? `${Math.round(a / 360) / 10} h` : `${Math.round(a / 8640) / 10} d`;
    return s < 0 ? `-${text}` : text;
  }
  const fmtTime = (iso) => (iso ? iso.replace("T", " ").slice(0, 16) + " UTC" : "");

  function readUrl() {
    const params = new URLSearchParams(location.search);
    for (const k of PAGE_KEYS) state[k] = params.get(k) || "";
    state.by = state.by || "channel";
    state.unit = state.unit || "day";
    state.page = state.page || "1";
  }
  function writeUrl() {
    const params = new URLSearchParams();
    for (const k of PAGE_KEYS) if (state[k] && !(k === "page" && state[k] === "1")) params.set(k, state[k]);
    const qs = params.toString();
    history.replaceState(null, "", qs ? `?${qs}` : location.pathname);
  }
  function query(keys, extra = {}) {
    const params = new URLSearchParams();
    for (const k of keys) if (state[k]) params.set(k, state[k]);
    for (const [k, v] of Object.entries(extra)) if (v !== "" && v !== null && v !== undefined) params.set(k, v);
    return params.toString();
  }
  async function api(path) {
    // same-origin credentials: the signed-in manager's session cookie goes with every call
    const r = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (r.status === 401) {  // the session expired: sign in again, then come back to this very view
      location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
      throw new Error("signed out");
    }
    if (!r.ok) throw new Error(`${path.split("?")[0]}: HTTP ${r.status}`);
    return r.json();
  }

  // -- tables and CSV ----------------------------------------------------------------------------------
  function cell(value) {
    const td = document.createElement("td");
    if (value instanceof Node) td.append(value);
    else if (value && typeof value === "object") { td.textContent = value.text; if (value.cls) td.className = value.cls; }
    else td.textContent = value === null || value === undefined ? "" : String(value);
    return td;
  }
  function fill(id, rows) {
    const body = $(`#${id} tbody`);
    body.replaceChildren(...rows.map(({ key, cells, cls }) => {
      const tr = document.createElement("tr");
      tr.dataset.key = key;
      if (cls) tr.className = cls;
      tr.append(...cells.map(cell));
      return tr;
    }));
    if (!rows.length) {
      const tr = document.createElement("tr");
      const td = cell("nothing here");
      td.colSpan = $(`#${id} thead tr`).children.length;
      tr.append(td);
      body.append(tr);
    }
  }
  function tableCsv(id) {
    const quote = (t) => (/[",\n]/.test(t) ? `"${t.replace(/"/g, '""')}"` : t);
    const rows = [...$(`#${id}`).querySelectorAll("tr")].filter((tr) => tr.dataset.key !== undefined || tr.parentElement.tagName === "THEAD");
    return rows.map((tr) => [...tr.children].map((c) => quote(c.textContent.trim())).join(",")).join("\r\n") + "\r\n";
  }
  function downloadCsv(id) {
    const url = URL.createObjectURL(new Blob([tableCsv(id)], { type: "text/csv" }));
    const a = Object.assign(document.createElement("a"), { href: url, download: `${id.replace(/^t-/, "")}.csv` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }
  const leadButton = (id) => {
    const b = Object.assign(document.createElement("button"), { type: "button", className: "lead", textContent: id });
    b.dataset.lead = id;
    return b;
  };
  function meter(n, cap) {
    const span = document.createElement("span");
    span.append(`${n} / ${cap ?? "–"}`);
    if (cap) {
      const m = Object.assign(document.createElement("span"), { className: "meter" });
      m.setAttribute("aria-hidden", "true");
      const i = document.createElement("i");
      i.style.width = `${Math.min(100, (100 * n) / cap)}%`;
      if (n >= cap) i.className = "full";
      m.append(i);
      span.append(m);
    }
    return span;
  }

  // -- charts ------------------------------------------------------------------------------------------
  function draw(id, { labels, xs, series, kind, axes }) {
    const el = $(`#${id}`);
    window.__insights.drawn[id] = { labels, series: Object.fromEntries(series.map((s) => [s.label, s.values])) };
    el.dataset.series = JSON.stringify(window.__insights.drawn[id]);
    el.setAttribute("aria-label", `${$(`#${el.getAttribute("aria-labelledby")}`).textContent}: ` +
      series.map((s) => `${s.label} ${s.values.map((v, i) => `${labels[i]} ${v ?? "none"}`).join(", ")}`).join("; "));
    if (charts[id]) charts[id].destroy();
    if (typeof uPlot === "undefined") return;
    const width = Math.max(260, el.clientWidth || 300);
    const bars = kind === "bars" ? uPlot.paths.bars({ size: [0.7, 60] }) : null;
    const opts = {
      width, height: 240, legend: { show: true, live: false }, cursor: { drag: { x: false, y: false } },
      scales: { x: kind === "bars" ? { time: false, range: [-0.5, labels.length - 0.5] } : { time: true } },
      axes: [
        kind === "bars" ? { values: (u, splits) => splits.map((v) => labels[v] ?? ""), space: 30, incrs: [1] } : {},
        { label: axes?.[0] || "leads", size: 50 },
        ...(axes?.[1] ? [{ label: axes[1], side: 1, scale: "right", grid: { show: false }, size: 50 }] : []),
      ],
      series: [{ label: kind === "bars" ? "bucket" : "from", value: (u, v) => (v === null ? "" : kind === "bars" ? labels[v] : fmtTime(new Date(v * 1000).toISOString())) },
        ...series.map((s, i) => ({
          label: s.label, stroke: COLORS[i % COLORS.length], width: 2, scale: s.scale || "y",
          fill: s.bars || kind === "bars" ? COLORS[i % COLORS.length] + "cc" : undefined,
          paths: s.bars || kind === "bars" ? bars || uPlot.paths.bars({ size: [0.5, 40] }) : undefined,
          points: { show: kind !== "bars" && !s.bars },
        }))],
    };
    charts[id] = new uPlot(opts, [xs, ...series.map((s) => s.values)], el);
  }
  function redrawAll() {
    for (const [id, chart] of Object.entries(charts)) chart.setSize({ width: Math.max(260, $(`#${id}`).clientWidth), height: 240 });
  }

  // -- views -------------------------------------------------------------------------------------------
  async function loadOptions() {
    const options = await api("/v1/views/options");
    for (const name of [...FILTERS.slice(0, 5), "status"]) {
      const select = $(`select[name=${name}]`);
      const current = state[name];
      const values = [...new Set([...(options[name] || []), ...(current ? [current] : [])])];
      select.replaceChildren(select.options[0], ...values.map((v) => Object.assign(document.createElement("option"), { value: v, textContent: v })));
      select.value = current;
    }
  }
  async function loadSpeed() {
    const data = await api(`/v1/views/speed?${query(FILTERS, { by: state.by })}`);
    const t = data.first_touch.total, r = data.routed.total;
    $("#speed-kpis").replaceChildren(...[
      [fmtDuration(t.median_seconds), "median capture → first touch"], [fmtDuration(t.p90_seconds), "p90 first touch"],
      [fmtPct(t.within["5m"]), "touched within 5 min"], [fmtPct(t.within["1h"]), "within 1 hour"],
      [fmtPct(t.within["24h"]), "within 24 hours"], [fmtDuration(r.median_seconds), "median capture → routed"],
    ].map(([v, l]) => { const d = Object.assign(document.createElement("div"), { className: "kpi" }); d.append(Object.assign(document.createElement("b"), { textContent: v }), Object.assign(document.createElement("span"), { textContent: l })); return d; }));
    for (const [id, part, never] of [["chart-touch", t, "not touched"], ["chart-route", r, "not routed"]]) {
      const labels = [...data.first_touch.buckets, never];
      const values = [...part.histogram, part.population - part.reached];
      draw(id, { kind: "bars", labels, xs: labels.map((_, i) => i), series: [{ label: "leads", values }] });
    }
    const routedBy = Object.fromEntries(data.routed.rows.map((x) => [x.key, x]));
    const row = (x, cls) => ({ key: x.key, cls, cells: [x.key, x.population, x.reached, fmtDuration(x.median_seconds), fmtDuration(x.p90_seconds),
      fmtPct(x.within["5m"]), fmtPct(x.within["1h"]), fmtPct(x.within["24h"]),
      fmtPct(x.sla_compliance), { text: x.breached, cls: x.breached ? "bad" : "" }, fmtDuration((routedBy[x.key] || r).median_seconds), fmtPct((routedBy[x.key] || r).within["5m"])] });
    fill("t-speed", [...data.first_touch.rows.map((x) => row(x)), row({ ...t, key: "total" }, "total")]);
  }
  async function loadTrends() {
    const data = await api(`/v1/views/trends?${query(FILTERS, { unit: state.unit })}`);
    const xs = data.x.map((x) => Date.parse(x) / 1000);
    const labels = data.x.map((x) => x.slice(0, 10));
    $("#trend-range").textContent = labels.length ? `${labels[0]} to ${labels[labels.length - 1]}` : "";
    document.querySelectorAll(".unit").forEach((e) => { e.textContent = data.unit; });
    const lines = [["captured", "captured"], ["MQL", "mql"], ["routed", "routed"], ["accepted", "accepted"],
      ["rejected", "rejected"], ["won", "won"], ["lost", "lost"]];
    draw("chart-volume", { labels, xs, series: lines.map(([label, k]) => ({ label, values: data[k] })) });
    draw("chart-sla", { labels, xs, axes: ["% within SLA", "breaches"], series: [
      { label: "% within SLA", values: data.compliance_pct }, { label: "breached", values: data.breached, scale: "right", bars: true }] });
    fill("t-trends", labels.map((l, i) => ({ key: l, cells: [l, data.captured[i], data.mql[i], data.routed[i], data.within_sla[i],
      data.compliance_pct[i] === null ? "–" : `${data.compliance_pct[i]}%`, data.breached[i], data.accepted[i], data.rejected[i], data.won[i], data.lost[i]] })));
  }
  async function loadFunnel() {
    const data = await api(`/v1/views/funnel?${query(FILTERS)}`);
    const top = Math.max(1, data.stages[0].count);
    const list = $("#funnel");
    list.replaceChildren(...data.stages.map((s) => {
      const li = document.createElement("li");
      li.dataset.stage = s.stage;
      li.dataset.count = s.count;
      const bar = Object.assign(document.createElement("div"), { className: "bar", textContent: s.count });
      bar.style.width = `${Math.max(1, (100 * s.count) / top)}%`;
      const conv = Object.assign(document.createElement("span"), { className: "conv",
        textContent: s.from_previous === null ? "" : `${fmtPct(s.from_previous)} of previous` });
      li.append(Object.assign(document.createElement("span"), { textContent: s.label }), bar, conv);
      li.setAttribute("aria-label", `${s.label}: ${s.count} leads${conv.textContent ? ", " + conv.textContent : ""}`);
      return li;
    }));
    window.__insights.drawn.funnel = { labels: data.stages.map((s) => s.stage), series: { leads: data.stages.map((s) => s.count) } };
    list.dataset.series = JSON.stringify(window.__insights.drawn.funnel);
    fill("t-funnel", data.stages.map((s) => ({ key: s.stage, cells: [s.label, s.count, fmtPct(s.from_previous), fmtPct(s.from_top)] })));
    for (const [id, rows] of [["t-rejected", data.rejected_reasons], ["t-lost", data.lost_reasons]])
      fill(id, rows.map((x) => ({ key: x.reason, cells: [x.reason, x.count, fmtPct(x.share)] })));
  }
  async function loadLoad() {
    const data = await api(`/v1/views/load?${query(["team", "rep"])}`);
    $("#load-note").textContent = data.roster_known ? "" : "(no roster announced yet: caps and shifts unknown)";
    fill("t-load", data.reps.map((x) => ({ key: x.rep, cells: [x.name ? `${x.name} (${x.rep})` : x.rep, x.team || "",
      meter(x.open, x.max_open), meter(x.week_new, x.weekly_cap),
      { text: x.availability, cls: x.availability === "on shift" ? "good" : x.availability === "unknown" ? "" : "warn" },
      { text: x.breaches_week, cls: x.breaches_week ? "bad" : "" }] })));
    fill("t-pools", data.pools.map((p) => ({ key: p.pool, cells: [p.name ? `${p.name} (${p.pool})` : p.pool,
      { text: p.waiting, cls: p.waiting ? "warn" : "" }, fmtDuration(p.oldest_wait_seconds), p.overflows_week,
      p.overflow ? `${p.overflow}${p.overflow_to ? " → " + p.overflow_to : ""}` : ""] })));
  }
  async function loadLive() {
    const data = await api(`/v1/views/live?${query(FILTERS.slice(0, 5))}`);
    $("#risk-count").textContent = `(${data.at_risk.total})`;
    $("#limbo-count").textContent = `(${data.limbo.total}, older than ${data.limbo_after_minutes} min)`;
    fill("t-risk", data.at_risk.rows.map((x) => ({ key: x.lead_id, cells: [leadButton(x.lead_id), x.name || "",
      x.rep_name ? `${x.rep_name} (${x.alert_owner})` : x.alert_owner || "", x.alert_kind.replace("_", " "),
      { text: x.alert_state.replace("_", " "), cls: x.alert_state === "breached" ? "bad" : "warn" },
      { text: x.seconds_left < 0 ? `overdue ${fmtDuration(-x.seconds_left)}` : `${fmtDuration(x.seconds_left)} left`, cls: x.seconds_left < 0 ? "bad" : "warn" }] })));
    fill("t-limbo", data.limbo.rows.map((x) => ({ key: x.lead_id, cells: [leadButton(x.lead_id), x.name || "",
      x.channel || "", x.status, { text: fmtDuration(x.age_seconds), cls: "bad" }] })));
  }
  async function loadLeads() {
    const perPage = 25;
    const data = await api(`/v1/views/leads?${query([...FILTERS, "q", "status", "page"], { per_page: perPage })}`);
    const pages = Math.max(1, Math.ceil(data.total / perPage));
    $("#found-summary").textContent = `${data.total} lead${data.total === 1 ? "" : "s"}`;
    $("#page-info").textContent = `page ${data.page} of ${pages}`;
    $("#prev").disabled = data.page <= 1;
    $("#next").disabled = data.page >= pages;
    fill("t-leads", data.rows.map((x) => ({ key: x.lead_id, cells: [leadButton(x.lead_id), x.name || "", x.email || "",
      x.company || "", x.rep_name ? `${x.rep_name} (${x.rep})` : x.rep || "", x.status, fmtTime(x.cohort_at)] })));
  }
  async function openLead(id, focus) {
    state.lead = id;
    writeUrl();
    const story = $("#story");
    story.hidden = false;
    $("#story-title").textContent = `Timeline of ${id}`;
    const list = $("#timeline");
    try {
      const data = await api(`/v1/leads/${encodeURIComponent(id)}/timeline`);
      list.replaceChildren(...data.events.map((e) => {
        const li = document.createElement("li");
        li.dataset.type = e.type;
        li.append(Object.assign(document.createElement("div"), { className: "when", textContent: `${fmtTime(e.time)} · ${e.source}` }),
          Object.assign(document.createElement("div"), { className: "type", textContent: e.type }),
          Object.assign(document.createElement("div"), { className: "why", textContent: e.explanation }));
        return li;
      }));
    } catch (err) {
      list.replaceChildren(Object.assign(document.createElement("li"), { textContent: `No timeline: ${err.message}` }));
    }
    story.dataset.lead = id;
    if (focus) story.focus();
  }

  async function refresh() {
    writeUrl();
    document.querySelectorAll(".by-name").forEach((e) => { e.textContent = state.by; });
    $("#status").textContent = "";
    const results = await Promise.allSettled([loadSpeed(), loadTrends(), loadFunnel(), loadLoad(), loadLive(), loadLeads()]);
    const failed = results.filter((r) => r.status === "rejected").map((r) => r.reason.message);
    window.__insights.errors = failed;
    $("#status").textContent = failed.length ? `Could not load: ${failed.join("; ")}` : "";
    window.__insights.loads += 1;
    document.body.dataset.loads = String(window.__insights.loads);
    document.body.dataset.loaded = "true";
  }

  function bind() {
    const filters = $("#filters");
    const sync = () => { for (const k of ["by", "unit", ...FILTERS]) filters.elements[k].value = state[k]; };
    sync();
    $("#find").elements.q.value = state.q;
    $("#find").elements.status.value = state.status;
    filters.addEventListener("submit", (e) => {
      e.preventDefault();
      for (const k of ["by", "unit", ...FILTERS]) state[k] = filters.elements[k].value;
      state.page = "1";
      refresh();
    });
    $("#reset").addEventListener("click", () => { for (const k of ["by", "unit", ...FILTERS]) state[k] = ""; state.by = "channel"; state.unit = "day"; sync(); refresh(); });
    $("#find").addEventListener("submit", (e) => {
      e.preventDefault();
      state.q = e.target.elements.q.value.trim();
      state.status = e.target.elements.status.value;
      state.page = "1";
      writeUrl();
      loadLeads().then(() => { document.body.dataset.searches = String(Number(document.body.dataset.searches || 0) + 1); });
    });
    const turn = (d) => { state.page = String(Math.max(1, Number(state.page) + d)); writeUrl(); loadLeads(); };
    $("#prev").addEventListener("click", () => turn(-1));
    $("#next").addEventListener("click", () => turn(1));
    document.addEventListener("click", (e) => {
      const lead = e.target.closest("button.lead");
      if (lead) openLead(lead.dataset.lead, true);
      const csv = e.target.closest("button.csv");
      if (csv) downloadCsv(csv.dataset.table);
    });
    let resizing;
    window.addEventListener("resize", () => { clearTimeout(resizing); resizing = setTimeout(redrawAll, 150); });
    setInterval(() => { loadLive().catch(() => {}); loadLoad().catch(() => {}); }, 30000);
  }

  async function start() {
    readUrl();
    try { await loadOptions(); } catch (err) { $("#status").textContent = `Could not load the filters: ${err.message}`; }
    bind();
    await refresh();
    if (state.lead) await openLead(state.lead, false);
  }
  start();
})();
