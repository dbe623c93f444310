/* inventory-cache operations console: plain JavaScript, no dependencies, no build step.
 *
 * - The API key lives in sessionStorage (this tab only) and goes out as a Bearer header.
 * - GET /v1/me tells the key's scopes; pages and buttons a scope forbids are not shown.
 * - Live data: one Server-Sent Events stream per page, read with fetch() and a streaming
 *   body reader (EventSource cannot send an Authorization header), resumed with
 *   Last-Event-ID after a drop; pages fed from PostgreSQL poll every few seconds.
 * - Store: every scan becomes a POS event with its own event id, queued in localStorage
 *   before it is sent, removed only once the service confirmed it; a resend after a
 *   network error carries the same id, so the service applies it once.
 */
"use strict";

const KEY_STORE = "inventory-console.key";
const QUEUE_STORE = "inventory-console.pos-queue";
const LOCATION_STORE = "inventory-console.store-location";
const POLL_MS = 2000;
const RETRY_MS = 3000;
const GTIN = /^(\d{8}|\d{12}|\d{13}|\d{14})$/;

const $ = (sel) => document.querySelector(sel);
const state = { key: null, me: null, page: null, stop: [] };

// ------------------------------------------------------------------ HTTP
class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.code = problem && problem.code;
  }
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${state.key}`, ...(options.headers || {}) };
  let body = options.body;
  if (body !== undefined && typeof body !== "string") {
    body = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, { method: options.method || "GET", headers, body, cache: "no-store" });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!response.ok) {
    if (response.status === 401 && state.key) signOut("The key was refused; sign in again.");
    throw new ApiError(response.status, data);
  }
  return data;
}

const allows = (scope) => !!state.me && (state.me.admin || state.me.scopes.includes(scope));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/* Follows /v1/events with the Bearer header; `onEvent(body)` for each change, `onState`
 * with "live", "reconnecting" or "refused". Returns a function that stops it. */
function follow(query, onEvent, onState) {
  const ctrl = new AbortController();
  let last = null;
  let stopped = false;
  (async () => {
    while (!stopped) {
      try {
        const headers = { Authorization: `Bearer ${state.key}` };
        if (last) headers["Last-Event-ID"] = last;
        const response = await fetch(`/v1/events${query}`, { headers, signal: ctrl.signal, cache: "no-store" });
        if (response.status === 401 || response.status === 403) { onState("refused"); return; }
        if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
        onState("live");
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value.replace(/\r\n?/g, "\n");
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            let event = "message";
            const data = [];
            for (const line of block.split("\n")) {
              if (line.startsWith(":")) continue;
              const colon = line.indexOf(":");
              const field = colon < 0 ? line : line.slice(0, colon);
              const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
              if (field === "id") last = val;
              else if (field === "event") event = val;
              else if (field === "data") data.push(val);
            }
            if (data.length && event === "message") onEvent(JSON.parse(data.join("\n")));
            else if (event === "reset") onEvent(null);
          }
        }
      } catch (_) {
        if (stopped) return;
      }
      if (stopped) return;
      onState("reconnecting");
      await sleep(RETRY_MS);
    }
  })();
  return () => { stopped = true; ctrl.abort(); };
}

/* Calls `fn` now and every `ms` while the page is shown; returns the stopper. */
function every(ms, fn) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    try { await fn(); } catch (_) { /* shown by fn; try again next tick */ }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

// ------------------------------------------------------------------ rendering helpers
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}
const td = (value, cls) => el("td", cls ? { class: cls } : {}, value);
const num = (value) => td(value ?? "", "num");
const when = (iso) => {
  if (!iso) return "";
  const date = new Date(iso);
  return date.toDateString() === new Date().toDateString() ? date.toLocaleTimeString() : date.toLocaleString();
};

function csvDownload(name, header, rows) {
  const cell = (v) => {
    const s = String(v ?? "");
    return /[",\n\r]/.test(s) || /^[=+\-@]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  const text = [header, ...rows].map((r) => r.map(cell).join(",")).join("\r\n") + "\r\n";
  const link = el("a", { href: URL.createObjectURL(new Blob([text], { type: "text/csv" })), download: name });
  document.body.append(link);
  link.click();
  setTimeout(() => { URL.revokeObjectURL(link.href); link.remove(); }, 0);
}

// ------------------------------------------------------------------ sign-in and routing
async function signIn(key) {
  state.key = key;
  try {
    state.me = await api("/v1/me");
  } catch (err) {
    state.key = null;
    state.me = null;
    throw err;
  }
  sessionStorage.setItem(KEY_STORE, key);
  $("#who-name").textContent = state.me.name;
  $("#who-scopes").textContent = `scopes: ${state.me.scopes.join(", ")}`;
  for (const link of document.querySelectorAll("#nav a")) link.hidden = !allows(link.dataset.scope);
  $("#nav").hidden = false;
  $("#who").hidden = false;
  route();
  flushQueue();
}

function signOut(message) {
  sessionStorage.removeItem(KEY_STORE);
  state.key = null;
  state.me = null;
  $("#nav").hidden = true;
  $("#who").hidden = true;
  leavePage();
  show("signin");
  $("#signin-error").textContent = message || "";
  $("#signin-key").focus();
}

const PAGES = {
  stock: { scope: "read", enter: enterStock },
  store: { scope: "warehouse", enter: enterStore },
  alerts: { scope: "read", enter: enterAlerts },
  reconcile: { scope: "admin", enter: enterReconcile },
  health: { scope: "read", enter: enterHealth },
};

function show(name) {
  for (const page of document.querySelectorAll(".page")) page.hidden = page.id !== `page-${name}`;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.page === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function leavePage() {
  for (const stop of state.stop.splice(0)) stop();
}

function route() {
  if (!state.me) return;
  let name = location.hash.replace(/^#/, "");
  if (!PAGES[name]) name = Object.keys(PAGES).find((p) => allows(PAGES[p].scope)) || "";
  leavePage();
  state.page = name;
  if (!PAGES[name] || !allows(PAGES[name].scope)) {
    show("forbidden");
    $("#forbidden-text").textContent = PAGES[name]
      ? `This page needs an API key with the scope "${PAGES[name].scope}".`
      : "This key has none of the scopes the console's pages need.";
    return;
  }
  show(name);
  PAGES[name].enter();
}

// ------------------------------------------------------------------ Stock
const stock = { sku: null, levels: {}, history: [] };

function enterStock() {
  const input = $("#stock-code");
  input.focus();
  input.select(); // the next scan replaces what is there
  if (stock.sku) loadStock(stock.sku);
}

async function resolveCode(code) {
  if (GTIN.test(code)) {
    try {
      return (await api(`/v1/barcodes/${encodeURIComponent(code)}`)).sku;
    } catch (err) {
      if (err.status !== 404) throw err; // not a known barcode: it may be a SKU of digits
    }
  }
  return code;
}

async function loadStock(code) {
  const message = $("#stock-message");
  leavePage();
  message.textContent = "Looking up…";
  let sku;
  try {
    sku = await resolveCode(code);
  } catch (err) {
    message.textContent = err.message;
    return;
  }
  stock.sku = sku;
  stock.levels = {};
  stock.history = [];
  $("#stock-sku").textContent = sku === code ? sku : `${sku} (barcode ${code})`;
  const badge = $("#stock-feed");
  // Follow first, then read: a change between the two shows either way.
  const stop = follow(`?sku=${encodeURIComponent(sku)}`, (event) => {
    if (event === null) { loadStock(sku); return; }
    for (const row of event.rows) {
      if (row.sku !== sku) continue;
      stock.levels[row.location] = row;
      stock.history.push({ t: event.ts, location: row.location, on_hand: row.on_hand, locked: row.locked });
      renderLevels(row.location);
      renderChart();
      prependMovement(event, row);
    }
  }, (s) => {
    badge.textContent = s === "live" ? "live" : s;
    badge.className = `badge ${s === "live" ? "ok" : "warn"}`;
  });
  state.stop.push(stop);
  try {
    const [levels, moves] = await Promise.all([
      api(`/v1/stock/${encodeURIComponent(sku)}`),
      api(`/v1/movements?sku=${encodeURIComponent(sku)}&limit=200`).catch((err) => ({ items: [], error: err })),
    ]);
    for (const [loc, lv] of Object.entries(levels.locations)) {
      if (!stock.levels[loc]) stock.levels[loc] = lv;
    }
    const past = moves.items.slice().reverse().map((m) => ({
      t: Date.parse(m.created_at), location: m.location, on_hand: m.on_hand_after, locked: m.locked_after,
    }));
    stock.history = past.concat(stock.history);
    renderLevels();
    renderMovements(moves.items);
    renderChartLocations();
    renderChart();
    $("#stock-result").hidden = false;
    message.textContent = moves.error ? `Movements unavailable: ${moves.error.message}` : "";
  } catch (err) {
    message.textContent = err.message;
  }
}

function renderLevels(changed) {
  const body = $("#stock-levels tbody");
  body.replaceChildren();
  const locations = Object.keys(stock.levels).sort();
  if (!locations.length) body.append(el("tr", {}, el("td", { colspan: 5 }, "No stock anywhere.")));
  for (const loc of locations) {
    const lv = stock.levels[loc];
    body.append(el("tr", { "data-location": loc, class: loc === changed ? "flash" : "" },
      el("th", { scope: "row" }, loc), num(lv.on_hand), num(lv.locked), num(lv.safety_stock), num(lv.available)));
  }
  const select = $("#stock-chart-location");
  if (changed && ![...select.options].some((o) => o.value === changed)) renderChartLocations();
}

function movementRow(m) {
  const signed = (v) => (v > 0 ? `+${v}` : String(v));
  return el("tr", {}, td(when(m.created_at)), td(m.location), td(m.type), td(m.reason || ""), td(m.ref || ""),
    num(signed(m.delta_on_hand)), num(signed(m.delta_locked)), num(m.on_hand_after), num(m.locked_after));
}

function renderMovements(items) {
  const body = $("#stock-movements tbody");
  body.replaceChildren(...items.slice(0, 50).map(movementRow));
}

function prependMovement(event, row) {
  const body = $("#stock-movements tbody");
  body.prepend(movementRow({
    created_at: new Date(event.ts).toISOString(), location: row.location, type: event.type,
    reason: event.reason, ref: event.ref, delta_on_hand: row.delta_on_hand,
    delta_locked: row.delta_locked, on_hand_after: row.on_hand, locked_after: row.locked,
  }));
  while (body.children.length > 50) body.lastChild.remove();
}

function renderChartLocations() {
  const select = $("#stock-chart-location");
  const current = select.value;
  const locations = [...new Set([...Object.keys(stock.levels), ...stock.history.map((h) => h.location)])].sort();
  select.replaceChildren(el("option", { value: "" }, "All locations"), ...locations.map((l) => el("option", { value: l }, l)));
  select.value = locations.includes(current) ? current : "";
}

/* Steps of on_hand and locked over time, summed over locations unless one is chosen. */
function chartSeries() {
  const only = $("#stock-chart-location").value;
  const latest = {};
  const points = [];
  for (const h of stock.history.slice().sort((a, b) => a.t - b.t)) {
    if (only && h.location !== only) continue;
    latest[h.location] = h;
    let onHand = 0;
    let locked = 0;
    for (const v of Object.values(latest)) { onHand += v.on_hand; locked += v.locked; }
    points.push({ t: h.t, on_hand: onHand, locked });
  }
  if (points.length) points.push({ ...points[points.length - 1], t: Math.max(Date.now(), points[points.length - 1].t) });
  return points;
}

function renderChart() {
  const svg = $("#stock-chart");
  const ns = "http://www.w3.org/2000/svg";
  const make = (tag, attrs, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const W = Math.max(300, Math.round(svg.getBoundingClientRect().width) || 640);
  const H = 220, L = 44, R = 12, T = 12, B = 28;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const points = chartSeries();
  svg.replaceChildren();
  if (points.length < 2) {
    svg.append(make("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "No movements recorded yet"));
    return;
  }
  const t0 = points[0].t, t1 = Math.max(points[points.length - 1].t, t0 + 1);
  const top = Math.max(1, ...points.map((p) => Math.max(p.on_hand, p.locked)));
  const low = Math.min(0, ...points.map((p) => p.on_hand));
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - (v - low) / (top - low)) * (H - T - B);
  const path = (field) => points.map((p, i) => {
    const prev = i ? `H${x(p.t).toFixed(1)}` : "";
    return `${i ? prev + "V" : "M" + x(p.t).toFixed(1) + ","}${y(p[field]).toFixed(1)}`;
  }).join("");
  svg.append(
    make("line", { class: "axis", x1: L, y1: y(low), x2: W - R, y2: y(low) }),
    make("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }),
    make("text", { x: L - 6, y: y(top) + 4, "text-anchor": "end" }, String(top)),
    make("text", { x: L - 6, y: y(low) + 4, "text-anchor": "end" }, String(low)),
    make("text", { x: L, y: H - 8 }, new Date(t0).toLocaleTimeString()),
    make("text", { x: W - R, y: H - 8, "text-anchor": "end" }, new Date(t1).toLocaleTimeString()),
    make("path", { class: "onhand", d: path("on_hand") }),
    make("path", { class: "locked", d: path("locked") }),
  );
  const last = points[points.length - 1];
  svg.setAttribute("aria-label", `Chart of on hand and locked over time; now on hand ${last.on_hand}, locked ${last.locked}`);
}

// ------------------------------------------------------------------ Store
function loadQueue() {
  try { return JSON.parse(localStorage.getItem(QUEUE_STORE) || "[]"); } catch (_) { return []; }
}
function saveQueue(queue) { localStorage.setItem(QUEUE_STORE, JSON.stringify(queue)); }

function newEventId() {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return "con-" + Date.now().toString(36) + "-" + [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function enterStore() {
  const loc = $("#store-location");
  loc.value = localStorage.getItem(LOCATION_STORE) || loc.value;
  renderQueue();
  renderNet();
  (loc.value ? $("#store-scan") : loc).focus();
  state.stop.push(every(RETRY_MS, () => flushQueue()));
}

function renderNet() {
  const net = $("#store-net");
  const queued = loadQueue().filter((e) => !e.rejected).length;
  if (!navigator.onLine) {
    net.textContent = "Offline: scans are kept on this device and sent when the network returns";
    net.className = "badge bad";
  } else if (queued) {
    net.textContent = `Online: sending ${queued} waiting event(s)`;
    net.className = "badge warn";
  } else {
    net.textContent = "Online: every scan confirmed";
    net.className = "badge ok";
  }
}

function renderQueue() {
  const queue = loadQueue();
  const list = $("#store-queue");
  list.replaceChildren(...queue.map((item) => el("li", {
    class: item.rejected ? "rejected" : "", "data-event-id": item.event.event_id,
  }, `${item.event.type} ${item.event.sku || item.event.barcode} × ${item.event.qty} at ${item.location}`,
  el("span", { class: "muted" }, ` (${item.event.event_id}) `),
  item.rejected ? `refused: ${item.rejected}` : (item.error ? `waiting: ${item.error}` : "waiting"),
  item.rejected ? el("button", { type: "button", class: "secondary", onclick: () => dropRejected(item.event.event_id) }, "Dismiss") : "")));
  $("#store-queue-count").textContent = String(queue.filter((e) => !e.rejected).length);
  renderNet();
}

function dropRejected(eventId) {
  saveQueue(loadQueue().filter((e) => e.event.event_id !== eventId));
  renderQueue();
}

function book(event) {
  event.preventDefault();
  const error = $("#store-error");
  const location = $("#store-location").value.trim();
  const code = $("#store-scan").value.trim();
  const type = document.querySelector('input[name="store-type"]:checked').value;
  const qty = Number($("#store-qty").value);
  error.textContent = "";
  if (!location || !code) { error.textContent = "Give a location and scan a code."; return; }
  if (!Number.isInteger(qty) || qty < (type === "count" ? 0 : 1)) {
    error.textContent = type === "count" ? "A count is 0 or more." : "Sell or return at least 1.";
    return;
  }
  localStorage.setItem(LOCATION_STORE, location);
  const item = { location, event: { event_id: newEventId(), type, qty, [GTIN.test(code) ? "barcode" : "sku"]: code } };
  saveQueue([...loadQueue(), item]); // kept before it is sent: a crash or an outage loses nothing
  $("#store-scan").value = "";
  $("#store-scan").focus();
  renderQueue();
  flushQueue();
}

let flushing = false;

/* Sends what waits, one location's batch at a time. Confirmed events (applied, or
 * replayed: sent before and applied then) leave the queue; refused ones stay visible. */
async function flushQueue() {
  if (flushing || !state.key || !allows("warehouse")) return;
  flushing = true;
  try {
    for (;;) {
      const queue = loadQueue().filter((e) => !e.rejected);
      if (!queue.length) break;
      const location = queue[0].location;
      const batch = queue.filter((e) => e.location === location).slice(0, 1000);
      let answer;
      try {
        answer = await api("/v1/pos/events", { method: "POST", body: { location, events: batch.map((e) => e.event) } });
      } catch (err) {
        const permanent = err instanceof ApiError && err.status === 422;
        markQueue(batch, permanent ? "rejected" : "error", err.message);
        if (!permanent) break; // the network or the service is away: try again later
        continue;
      }
      const done = new Map(answer.results.map((r, i) => [batch[i].event.event_id, r]));
      const kept = [];
      for (const item of loadQueue()) {
        const result = done.get(item.event.event_id);
        if (!result) { kept.push(item); continue; }
        if (result.status === "error") kept.push({ ...item, rejected: `${result.code}: ${result.detail}` });
        else confirmed(item, result);
      }
      saveQueue(kept);
      renderQueue();
    }
  } finally {
    flushing = false;
    if (state.page === "store") renderQueue();
  }
}

function markQueue(batch, field, message) {
  const ids = new Set(batch.map((e) => e.event.event_id));
  saveQueue(loadQueue().map((item) => (ids.has(item.event.event_id) ? { ...item, [field]: message } : item)));
  if (state.page === "store") renderQueue();
}

function confirmed(item, result) {
  const body = $("#store-done tbody");
  const note = result.oversold ? `${result.status}, oversold by ${result.oversold}` : result.status;
  body.prepend(el("tr", { "data-event-id": item.event.event_id }, td(result.sku || item.event.sku || item.event.barcode),
    td(item.event.type), num(item.event.qty), td(note, result.oversold ? "result bad" : "result"),
    num(result.on_hand), num(result.available), td(item.event.event_id, "muted")));
  while (body.children.length > 100) body.lastChild.remove();
}

// ------------------------------------------------------------------ Alerts and replenishment
const board = { alerts: [], suggestions: [] };

function enterAlerts() {
  state.stop.push(every(POLL_MS, async () => {
    try {
      const [alerts, replenishment] = await Promise.all([api("/v1/alerts?limit=500"), api("/v1/replenishment")]);
      board.alerts = alerts.items;
      board.suggestions = replenishment.items;
      renderAlerts();
      $("#alerts-updated").textContent = `Updated ${new Date().toLocaleTimeString()} (every ${POLL_MS / 1000} s)`;
    } catch (err) {
      $("#alerts-updated").textContent = `Not updated: ${err.message}`;
    }
  }));
}

function alertDetails(a) {
  return Object.entries(a.details || {}).map(([k, v]) => `${k} ${v}`).join(", ");
}

function suggestionWhy(s) {
  return `position ${s.position} (on hand ${s.on_hand} − locked ${s.locked} + in transit ${s.in_transit}) ≤ reorder point ${s.reorder_point}; ` +
    `sold ${s.sold} in ${s.window_days} d (${s.avg_daily_sales.toFixed(2)}/day), lead time ${s.lead_time_days} d, safety stock ${s.safety_stock}`;
}

function renderAlerts() {
  const alerts = $("#alerts-table tbody");
  alerts.replaceChildren(...board.alerts.map((a) => el("tr", { "data-kind": a.kind, "data-sku": a.sku },
    td(a.kind.replace("_", " "), `kind-${a.kind}`), td(a.sku), td(a.location), td(when(a.raised_at)), td(alertDetails(a), "wrap"))));
  if (!board.alerts.length) alerts.append(el("tr", {}, el("td", { colspan: 5 }, "No active alerts.")));
  const rows = $("#replenishment-table tbody");
  rows.replaceChildren(...board.suggestions.map((s) => el("tr", { "data-sku": s.sku },
    td(s.sku), td(s.location), num(s.suggested_qty), td(suggestionWhy(s), "wrap"))));
  if (!board.suggestions.length) rows.append(el("tr", {}, el("td", { colspan: 4 }, "Nothing to order.")));
}

// ------------------------------------------------------------------ Reconcile
const recon = { run: null, corrected: {} };

function enterReconcile() {
  loadRuns();
  if (recon.run) openRun(recon.run.run_id);
}

async function loadRuns() {
  const body = $("#reconcile-runs tbody");
  try {
    const runs = (await api("/v1/reconcile?limit=20")).items;
    body.replaceChildren(...runs.map((r) => el("tr", { "data-run-id": r.run_id },
      el("td", {}, el("button", { type: "button", class: "secondary", onclick: () => openRun(r.run_id) }, r.run_id)),
      td(when(r.started_at)), td(r.status), td(r.mode),
      num(r.summary ? r.summary.checked : ""), num(r.summary ? r.summary.diffs : ""))));
    if (!runs.length) body.append(el("tr", {}, el("td", { colspan: 6 }, "No runs yet.")));
  } catch (err) {
    $("#reconcile-message").textContent = err.message;
  }
}

async function runReconcile() {
  const button = $("#reconcile-run");
  const message = $("#reconcile-message");
  button.disabled = true;
  message.textContent = "Running…";
  try {
    const run = await api("/v1/reconcile", { method: "POST", body: { mode: "report" } });
    message.textContent = `Run ${run.run_id}: ${run.diffs.length} difference(s).`;
    await loadRuns();
    showRun(run);
  } catch (err) {
    message.textContent = err.message;
  } finally {
    button.disabled = false;
  }
}

async function openRun(runId) {
  try { showRun(await api(`/v1/reconcile/${encodeURIComponent(runId)}`)); } catch (err) {
    $("#reconcile-message").textContent = err.message;
  }
}

const correctable = (run) => run.mode === "report" && run.status === "done";
const correctionRef = (run, d) => `cc.${run.run_id}.${d.sku}.${d.location}`.slice(0, 64);

function showRun(run) {
  recon.run = run;
  $("#reconcile-detail").hidden = false;
  $("#reconcile-detail-title").textContent = `Run ${run.run_id}: ${run.diffs.length} difference(s), ${run.mode} mode`;
  const open = correctable(run) ? run.diffs.filter((d) => !recon.corrected[correctionRef(run, d)]) : [];
  $("#reconcile-correct-all").hidden = !open.length;
  $("#reconcile-diffs tbody").replaceChildren(...run.diffs.map((d) => {
    const ref = correctionRef(run, d);
    let action;
    if (!correctable(run)) action = run.mode === "correct" ? "corrected by the run" : "";
    else if (recon.corrected[ref]) action = recon.corrected[ref];
    else action = el("button", { type: "button", onclick: () => correct(run, d) }, `Set ${d.location} to ${d.wms}`);
    return el("tr", { "data-sku": d.sku, "data-location": d.location }, td(d.sku), td(d.location), num(d.ours),
      num(d.wms), num(d.diff > 0 ? `+${d.diff}` : d.diff), td(d.kind.replace("_", " "), `kind-${d.kind}`), td(action));
  }));
  if (!run.diffs.length) $("#reconcile-diffs tbody").append(el("tr", {}, el("td", { colspan: 7 }, "No differences.")));
}

/* What the run's correct mode does, for one difference: an adjustment of -diff with
 * reason reconcile. Its ref is derived from the run and the row, so a second click (or a
 * retry after a lost answer) is applied once. */
async function correct(run, d) {
  const ref = correctionRef(run, d);
  try {
    const level = await api("/v1/adjustments", {
      method: "POST",
      body: { ref, sku: d.sku, location: d.location, delta: -d.diff, reason: "reconcile" },
    });
    recon.corrected[ref] = `corrected: on hand now ${level.on_hand}`;
  } catch (err) {
    recon.corrected[ref] = undefined;
    $("#reconcile-message").textContent = `${d.sku} at ${d.location}: ${err.message}`;
  }
  if (recon.run === run) showRun(run);
}

async function correctAll() {
  const run = recon.run;
  for (const d of run.diffs) {
    if (!recon.corrected[correctionRef(run, d)]) await correct(run, d);
  }
  $("#reconcile-message").textContent = `Corrections sent for run ${run.run_id}.`;
}

// ------------------------------------------------------------------ Health
function enterHealth() {
  let previous = null;
  const put = (id, text, cls) => { const dd = $(id); dd.textContent = text; dd.className = cls || ""; };
  state.stop.push(every(POLL_MS, async () => {
    const ready = await fetch("/readyz", { cache: "no-store" }).then(async (r) => ({ code: r.status, body: await r.json().catch(() => ({})) }))
      .catch(() => ({ code: 0, body: {} }));
    const readiness = ready.body.status || (ready.code === 503 ? "not ready" : "unreachable");
    put("#health-ready", ready.body.detail ? `${readiness}: ${ready.body.detail}` : readiness,
      readiness === "ready" ? "good" : readiness === "degraded" ? "warnc" : "bad");
    let s;
    try { s = await api("/v1/status"); } catch (err) {
      $("#health-updated").textContent = `Not updated: ${err.message}`;
      return;
    }
    put("#health-redis", s.redis.replace("_", " "), s.redis === "ready" ? "good" : "bad");
    put("#health-postgres", s.postgres, s.postgres === "up" ? "good" : "bad");
    put("#health-lag", s.worker_lag_events === null ? "unknown" : `${s.worker_lag_events} event(s)`,
      s.worker_lag_events === 0 ? "good" : "warnc");
    put("#health-sweep", s.expiry_sweep_delay_seconds === null ? "unknown" : `${s.expiry_sweep_delay_seconds.toFixed(1)} s`,
      s.expiry_sweep_delay_seconds !== null && s.expiry_sweep_delay_seconds < 5 ? "good" : "warnc");
    if (previous && s.events_total !== null && previous.events_total !== null && s.now_ms > previous.now_ms) {
      const rate = ((s.events_total - previous.events_total) * 1000) / (s.now_ms - previous.now_ms);
      put("#health-rate", `${rate.toFixed(1)} /s`);
    } else if (!previous) {
      put("#health-rate", "measuring…");
    }
    previous = s;
    $("#health-updated").textContent = `Updated ${new Date().toLocaleTimeString()} (every ${POLL_MS / 1000} s)`;
  }));
}

// ------------------------------------------------------------------ wiring
document.addEventListener("DOMContentLoaded", () => {
  $("#signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("#signin-key");
    $("#signin-error").textContent = "";
    try {
      await signIn(input.value.trim());
      input.value = "";
    } catch (err) {
      $("#signin-error").textContent = err.status === 401 ? "Unknown or revoked API key." : err.message;
    }
  });
  $("#sign-out").addEventListener("click", () => signOut());
  $("#stock-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const code = $("#stock-code").value.trim();
    if (code) loadStock(code);
    $("#stock-code").focus();
    $("#stock-code").select(); // the next scan replaces this one
  });
  $("#stock-chart-location").addEventListener("change", renderChart);
  $("#store-form").addEventListener("submit", book);
  $("#store-retry").addEventListener("click", () => flushQueue());
  $("#alerts-csv").addEventListener("click", () => csvDownload("alerts.csv",
    ["kind", "sku", "location", "raised_at", "details"],
    board.alerts.map((a) => [a.kind, a.sku, a.location, a.raised_at, alertDetails(a)])));
  $("#replenishment-csv").addEventListener("click", () => csvDownload("replenishment.csv",
    ["sku", "location", "suggested_qty", "position", "reorder_point", "on_hand", "locked", "in_transit",
      "sold", "window_days", "avg_daily_sales", "lead_time_days", "safety_stock"],
    board.suggestions.map((s) => [s.sku, s.location, s.suggested_qty, s.position, s.reorder_point, s.on_hand,
      s.locked, s.in_transit, s.sold, s.window_days, s.avg_daily_sales, s.lead_time_days, s.safety_stock])));
  $("#reconcile-run").addEventListener("click", runReconcile);
  $("#reconcile-correct-all").addEventListener("click", correctAll);
  window.addEventListener("hashchange", route);
  window.addEventListener("online", () => { renderNet(); flushQueue(); });
  window.addEventListener("offline", renderNet);
  const saved = sessionStorage.getItem(KEY_STORE);
  if (saved) signIn(saved).catch(() => signOut("Sign in again."));
  else signOut();
});
