// crossbank console: renders the sections the server pushes (server-sent events).
// The page never polls: it listens to /api/events, and fetches one transfer's
// timeline when a person opens it or when the feed says that transfer changed.
"use strict";

const view = {
  sections: {},
  filter: "all",
  selected: null,
  selectedRow: null,
  session: null,
  source: null,
  firstRenderAt: null,
  retryDelay: 1000,
};

// For the page's own measurements (orchestrator/console/measure.py).
window.crossbankConsole = { renders: [] };

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

// -- talking to the console -------------------------------------------------------------

async function getJSON(path) {
  const response = await fetch(path, { credentials: "same-origin" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((body.error && body.error.message) || `HTTP ${response.status}`);
  return body;
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body || {}),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error((answer.error && answer.error.message) || `HTTP ${response.status}`);
    error.cli = answer.cli;
    throw error;
  }
  return answer;
}

function say(text, { error = false, cli = null, warn = false } = {}) {
  const box = $("message");
  box.replaceChildren(text);
  if (cli) box.append(el("span", { class: "equiv" }, " (", el("code", { text: cli }), ")"));
  box.className = error ? "message error" : warn ? "message warn" : "message ok";
}

// A word for a shell, quoted as Python's shlex.quote does (the console's answers use it).
function shellQuote(word) {
  if (word === "") return "''";
  if (!/[^\w@%+=:,./-]/.test(word)) return word;
  return `'${word.replace(/'/g, `'"'"'`)}'`;
}

// An action's answer says what came of it; an operator's may be nothing (too late), said so.
async function act(button, run) {
  button.disabled = true;
  try {
    const answer = await run();
    say(answer.message || "done", { cli: answer.cli, warn: answer.took_effect === false });
    return answer;
  } catch (error) {
    say(error.message, { error: true, cli: error.cli });
    return null;
  } finally {
    button.disabled = false;
  }
}

// -- the feed ---------------------------------------------------------------------------

function connect() {
  setConn("connecting…", "pending");
  view.source = new EventSource("/api/events");
  view.source.addEventListener("open", () => setConn("live: updates are pushed as they happen", "live"));
  view.source.addEventListener("state", (event) => {
    const message = JSON.parse(event.data);
    if (!message.whole) noteChanges(view.sections, message.sections);
    if (message.whole) view.sections = message.sections;
    else view.sections = Object.assign({}, view.sections, message.sections);
    render(Object.keys(message.sections));
    window.crossbankConsole.renders.push({
      sequence: message.sequence,
      sections: Object.keys(message.sections),
      sentAt: message.sent_at,
      renderedAt: performance.timeOrigin + performance.now(),
    });
    if (window.crossbankConsole.renders.length > 200) window.crossbankConsole.renders.shift();
    if (view.firstRenderAt === null) {
      view.firstRenderAt = performance.now();
      window.crossbankConsole.firstRenderAt = view.firstRenderAt;
      document.body.dataset.loaded = "true";
    }
  });
  view.source.addEventListener("open", () => { view.retryDelay = 1000; });
  view.source.addEventListener("error", () => {
    if (view.source.readyState === EventSource.CLOSED) {
      // Refused (a token, too many pages): ask again soon, then less and less often.
      const delay = view.retryDelay;
      view.retryDelay = Math.min(delay * 2, 15000);
      setConn(`not connected: retrying in ${Math.round(delay / 1000)} s`, "down");
      view.source = null;
      setTimeout(boot, delay);
    } else {
      setConn("connection lost: reconnecting…", "down");
    }
  });
}

function setConn(text, kind) {
  const node = $("conn");
  node.textContent = text;
  node.dataset.kind = kind;
}

// -- rendering --------------------------------------------------------------------------

// -- what changed, in words ------------------------------------------------------------

const MAX_ACTIVITY = 30;

function noteChanges(before, after) {
  if (!before.transfers && !before.banks) return; // the first state: nothing changed yet
  const notes = [];
  if (after.transfers) {
    const old = new Map((before.transfers || []).map((row) => [row.transfer_id, row]));
    for (const row of after.transfers) {
      const was = old.get(row.transfer_id);
      if (!was) notes.push(`${row.transfer_id}: ${row.status}`);
      else if (was.status !== row.status) notes.push(`${row.transfer_id}: ${was.status} → ${row.status}`);
      else if ((was.ops || []).length < (row.ops || []).length) notes.push(`${row.transfer_id}: ${row.ops[row.ops.length - 1]} entry on its bank`);
      if (was && row.worker && was.worker !== row.worker) notes.push(`${row.transfer_id}: run by ${row.worker}`);
    }
  }
  if (after.workers && before.workers) {
    const old = new Map(before.workers.workers.map((w) => [w.name, w]));
    for (const worker of after.workers.workers) {
      const was = old.get(worker.name);
      if (!was && worker.alive) notes.push(`${worker.name} started (pid ${worker.pid})`);
      else if (was && was.alive && !worker.alive) notes.push(`${worker.name} is gone (pid ${worker.pid})`);
    }
  }
  if (after.banks && before.banks) {
    for (const name of ["source", "target"]) {
      const was = before.banks[name], now = after.banks[name];
      if (was.up && !now.up) notes.push(`${name} bank down`);
      if (!was.up && now.up) notes.push(`${name} bank back`);
      const held = new Set((was.holds || []).map((h) => h.op_id));
      for (const hold of now.holds || []) if (!held.has(hold.op_id)) notes.push(`${name} bank holds ${hold.op_id}`);
    }
  }
  if (after.system && before.system && before.system.store.up !== after.system.store.up) {
    notes.push(after.system.store.up ? `${after.system.store.kind} back` : `${after.system.store.kind} not answering`);
  }
  const list = $("activity");
  const clock = new Date().toISOString().slice(11, 23);
  for (const note of notes) list.prepend(el("li", {}, el("span", { class: "at", text: clock }), ` ${note}`));
  while (list.children.length > MAX_ACTIVITY) list.lastChild.remove();
}

function render(keys) {
  const sections = view.sections;
  if (keys.includes("system")) renderSystem(sections.system);
  if (keys.includes("banks")) {
    renderBank($("bank-source"), sections.banks.source);
    renderBank($("bank-target"), sections.banks.target);
  }
  if (keys.includes("totals")) renderTotals(sections.totals);
  if (keys.includes("charts") && sections.charts) renderCharts(sections.charts);
  if (keys.includes("transfers") || keys.includes("workers")) renderTransfers();
  if (keys.includes("workers")) renderWorkers(sections.workers);
  if (keys.includes("transfers") && view.selected) {
    const row = (sections.transfers || []).find((r) => r.transfer_id === view.selected);
    const text = JSON.stringify(row || null);
    if (text !== view.selectedRow) {
      view.selectedRow = text;
      loadDetail(view.selected);
    }
  }
}

function renderSystem(system) {
  const store = system.store;
  const where = store.where ? ` at ${store.where}` : "";
  const parts = [`transfers kept in the ${store.kind}${where}`, `workers' group ${system.group}`];
  if (system.read_only) parts.push("read-only (CONSOLE_READ_ONLY)");
  const node = $("system");
  node.replaceChildren(parts.join(" · "));
  if (!store.up) node.append(el("strong", { class: "error", text: ` · ${store.error}` }));
  $("transfers-source").textContent = `(from both ledgers' op ids and the ${store.kind})`;
  $("local-actions").hidden = !system.local || system.read_only;
  $("start-form").hidden = system.read_only;
  for (const id of ["start-worker"]) $(id).disabled = !system.local;
  updateEquivalents();
}

function renderBank(node, bank) {
  const title = el("h3", {}, `${bank.name} bank `, el("span", { class: "from-where", text: `GET ${bank.url}/accounts` }));
  if (!bank.up) {
    node.classList.add("down");
    node.replaceChildren(
      title,
      el("p", { class: "bank-down", role: "alert" }, el("strong", { text: `${bank.name} bank DOWN` }), ": balances unknown, not zero."),
      el("p", { class: "detail", text: bank.error }),
    );
    return;
  }
  node.classList.remove("down");
  const rows = bank.accounts.map((account) =>
    el("tr", { "data-account": account.account_id },
      el("td", { text: account.account_id }),
      el("td", { text: account.status, class: account.status === "closed" ? "closed" : "" }),
      el("td", { class: "num", text: account.balance_text })));
  const table = el("table", {},
    el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "account" }), el("th", { scope: "col", text: "status" }), el("th", { scope: "col", class: "num", text: "balance" }))),
    el("tbody", {}, ...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 3, text: "no accounts" }))])),
    el("tfoot", {}, el("tr", {}, el("th", { scope: "row", colspan: 2, text: "bank total" }), el("td", { class: "num", text: bank.total_text }))));
  const children = [title, el("div", { class: "scroll" }, table)];
  for (const hold of bank.holds || []) {
    children.push(el("p", { class: "hold" }, el("strong", { text: "holding " }), `${hold.op_id} (${hold.kind}, ${hold.stage} applying) since ${hold.since}`));
  }
  node.replaceChildren(...children);
}

function renderTotals(totals) {
  const node = $("totals");
  if (!totals.known) {
    node.className = "totals unknown";
    node.replaceChildren(el("strong", { text: "total unknown" }), `: ${totals.why}`);
    return;
  }
  node.className = totals.equal ? "totals equal" : "totals differs";
  node.replaceChildren(
    "both banks together: ",
    el("strong", { id: "total", text: totals.total_text }),
    " · opening balances: ",
    el("strong", { id: "opening-total", text: totals.opening_text }),
    totals.equal
      ? el("span", { class: "verdict", text: " · equal: no money created or destroyed" })
      : el("span", { class: "verdict", text: " · not equal now: money is between a debit and its credit or reversal (or something is wrong: run crossbank audit)" }),
  );
}

// -- the live charts (the banks' own /metrics, sampled by the console at each poll) -------

const SVG_NS = "http://www.w3.org/2000/svg";
// The plot's box in its viewBox (index.html): room above for the scale, below for the time.
const PLOT = { width: 320, height: 120, top: 14, bottom: 14 };
// Which bank each outcome is counted on.
const OUTCOME_BANK = { committed: "target", compensated: "source", failed: "source" };
const BANK_NAMES = ["source", "target"];

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(key, String(value));
  }
  if (text !== undefined) node.textContent = text;
  return node;
}

// Cents for people, as the console's money.format_cents: 131000 -> "1,310.00".
function formatCents(cents) {
  const sign = cents < 0 ? "-" : "";
  const whole = Math.abs(cents);
  return `${sign}${Math.floor(whole / 100).toLocaleString("en-US")}.${String(whole % 100).padStart(2, "0")}`;
}

function formatMs(ms) {
  return `${ms < 10 ? ms.toFixed(2) : ms.toFixed(1)} ms`;
}

// The top of a chart's scale: 1, 2 or 5 times a power of ten, at least `floor`.
function scaleTop(value, floor) {
  const top = Math.max(value, floor);
  const power = 10 ** Math.floor(Math.log10(top));
  for (const step of [1, 2, 5]) if (step * power >= top) return step * power;
  return 10 * power;
}

// One chart: each line a path broken where its value is null (a bank down: a gap,
// never a drop to 0), bands where a bank was down, its scale's top and the time span.
function drawPlot(node, charts, lines, { floor, label }) {
  const { width, height, top, bottom } = PLOT;
  const span = charts.span;
  const shown = charts.t.map((t) => t >= -span);
  const values = lines.flatMap((line) => line.values.filter((v, i) => shown[i] && v !== null));
  const max = scaleTop(values.length ? Math.max(...values) : 0, floor);
  const x = (t) => ((t + span) / span) * width;
  const y = (v) => top + (1 - Math.max(v, 0) / max) * (height - top - bottom);
  const parts = [
    svg("line", { class: "gridline", x1: 0, x2: width, y1: y(max), y2: y(max) }),
    svg("line", { class: "axis", x1: 0, x2: width, y1: y(0), y2: y(0) }),
  ];
  const down = charts.t.map((_, i) => shown[i] && BANK_NAMES.some((name) => !charts.up[name][i]));
  let first = null;
  for (let i = 0; i <= down.length; i++) {
    if (i < down.length && down[i]) {
      if (first === null) first = i;
      continue;
    }
    if (first !== null) {
      const x0 = x(charts.t[first]);
      const x1 = x(charts.t[i - 1]);
      parts.push(svg("rect", { class: "down-band", x: Math.max(0, x0 - 1.5), y: top, width: Math.max(3, x1 - x0 + 3), height: height - top - bottom }));
      first = null;
    }
  }
  for (const line of lines) {
    let path = "";
    let pen = false;
    line.values.forEach((value, i) => {
      if (!shown[i] || value === null) {
        pen = false;
        return;
      }
      path += `${pen ? "L" : "M"}${x(charts.t[i]).toFixed(1)} ${y(value).toFixed(1)} `;
      pen = true;
    });
    parts.push(svg("path", { class: `line ${line.cls}`, d: path.trim(), "data-series": line.name }));
  }
  parts.push(
    svg("text", { class: "scale", x: 2, y: 10 }, label(max)),
    svg("text", { class: "scale", x: 2, y: height - 2 }, `−${Math.round(span)} s`),
    svg("text", { class: "scale", x: width - 2, y: height - 2, "text-anchor": "end" }, "now"),
  );
  node.replaceChildren(...parts);
}

function figure(attrs, cls, ...children) {
  return el("span", { ...attrs, class: `figure ${cls}` }, el("span", { class: `swatch ${cls}`, "aria-hidden": "true" }), ...children);
}

// Why a figure that needs `name`'s metrics is unknown: its bank is down, it serves no
// metrics (answering the rest), or it could not read its ledger's totals.
function unknownWhy(now, name) {
  if (now.banks[name].up) return `the ${name} bank's ledger totals are missing`;
  const bank = (view.sections.banks || {})[name];
  return bank && bank.up ? `no metrics from the ${name} bank` : `${name} bank DOWN`;
}

function renderCharts(charts) {
  const now = charts.now;
  $("chart-rates-how").textContent = `(over the last ${charts.rate_window} s)`;
  $("chart-latency-how").textContent = `(p50 and p99 over the last ${charts.latency_window} s)`;

  drawPlot($("chart-rates").querySelector("svg"), charts,
    ["committed", "compensated", "failed"].map((name) => ({ name, cls: name, values: charts.rates[name] })),
    { floor: 1, label: (max) => `${max}/s` });
  $("chart-rates-now").replaceChildren(...["committed", "compensated", "failed"].map((outcome) => {
    const count = now.counts[outcome];
    const rate = now.rates[outcome];
    const attrs = { "data-outcome": outcome, "data-count": count, "data-rate": rate };
    if (count === null) return figure(attrs, outcome, `${outcome}: `, el("strong", { class: "error", text: unknownWhy(now, OUTCOME_BANK[outcome]) }));
    return figure(attrs, outcome, `${outcome} `, el("strong", { text: rate === null ? "…" : `${rate.toFixed(2)}/s` }), ` (${count} in all)`);
  }));

  const latencyLines = BANK_NAMES.flatMap((bank) => ["p50", "p99"].map((q) => ({ name: `${bank}-${q}`, cls: `${bank} ${q}`, values: charts.latency_ms[bank][q] })));
  drawPlot($("chart-latency").querySelector("svg"), charts, latencyLines, { floor: 5, label: (max) => `${max} ms` });
  $("chart-latency-now").replaceChildren(...BANK_NAMES.map((bank) => {
    const shown = now.latency[bank];
    const attrs = { "data-bank": bank, "data-p50": shown && shown.p50, "data-p99": shown && shown.p99, "data-requests": shown && shown.requests };
    if (!now.banks[bank].up) return figure(attrs, bank, `${bank}: `, el("strong", { class: "error", text: unknownWhy(now, bank) }));
    if (shown.requests === null) return figure(attrs, bank, `${bank}: measuring…`);
    if (shown.requests === 0) return figure(attrs, bank, `${bank}: no POST /entries in the last ${charts.latency_window} s`);
    return figure(attrs, bank, `${bank} p50 `, el("strong", { text: formatMs(shown.p50) }), " · p99 ", el("strong", { text: formatMs(shown.p99) }), ` (${shown.requests} ${shown.requests === 1 ? "request" : "requests"})`);
  }));

  drawPlot($("chart-flight").querySelector("svg"), charts, [{ name: "in-flight", cls: "flight", values: charts.in_flight }],
    { floor: 100, label: formatCents });
  const missing = BANK_NAMES.filter((name) => !now.banks[name].up);
  const why = (missing.length ? missing : BANK_NAMES).map((name) => unknownWhy(now, name)).join("; ");
  $("chart-flight-now").replaceChildren(now.in_flight === null
    ? figure({ "data-cents": "" }, "flight", "unknown: ", el("strong", { class: "error", text: why }), ", not zero")
    : figure({ "data-cents": now.in_flight }, "flight", el("strong", { class: "big", text: now.in_flight_text }), " debited and not yet credited or given back"));
  for (const id of ["chart-rates", "chart-latency", "chart-flight"]) $(id).classList.toggle("down", missing.length > 0);
  const errors = BANK_NAMES.map((name) => now.banks[name].error).filter(Boolean);
  $("charts-errors").textContent = errors.join(" · ");
}

const STATUS_CLASS = { committed: "ok", compensated: "warn", failed: "bad", "in progress": "run", compensating: "warn" };

function renderTransfers() {
  const rows = (view.sections.transfers || []).filter((row) => view.filter === "all" || row.category === view.filter);
  const body = $("transfer-rows");
  if (!rows.length) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: 7, class: "hint", text: view.filter === "all" ? "no transfers yet: start one below" : "none with this status" })));
    return;
  }
  body.replaceChildren(...rows.map((row) => {
    const status = row.needs_attention ? `${row.status} · NEEDS ATTENTION` : row.status;
    return el("tr", { "data-transfer": row.transfer_id, "data-status": row.status, class: row.transfer_id === view.selected ? "selected" : "" },
      el("td", {}, el("button", { type: "button", class: "link", "aria-label": `timeline of ${row.transfer_id}`, onclick: () => select(row.transfer_id), text: row.transfer_id })),
      el("td", {}, el("span", { class: `badge ${row.needs_attention ? "bad" : STATUS_CLASS[row.status] || ""}`, text: status }),
        row.reason ? el("div", { class: "reason", text: row.reason }) : null),
      el("td", { class: "num", text: row.amount_text || "" }),
      el("td", { text: row.source_account ? `${row.source_account} → ${row.target_account}` : "" }),
      el("td", { text: (row.ops || []).join(" · ") || "none" }),
      el("td", { text: row.worker || "" }),
      el("td", { text: row.started_text || "" }));
  }));
}

function renderWorkers(workers) {
  const node = $("worker-list");
  if (!workers) {
    node.replaceChildren(el("p", { class: "hint", text: "Only a console started by crossbank demo sees its workers (the processes it started). Run one with crossbank worker." }));
    return;
  }
  const items = workers.workers.map((worker) =>
    el("li", { "data-worker": worker.name, class: worker.alive ? "alive" : "dead" },
      el("strong", { text: worker.name }), ` pid ${worker.pid ?? "?"} · `,
      worker.alive ? (worker.running.length ? `running ${worker.running.join(", ")}` : "alive, idle") : "not running (killed or stopped)"));
  node.replaceChildren(
    el("ul", {}, ...items),
    el("p", { class: "from-where", text: `from ${workers.source}` }));
}

// -- one transfer -----------------------------------------------------------------------

function select(transferId) {
  view.selected = transferId;
  view.selectedRow = null;
  renderTransfers();
  loadDetail(transferId);
}

async function loadDetail(transferId) {
  const node = $("detail");
  if (node.dataset.for !== transferId) {
    // A new transfer: its frame, and its operator's actions, which stay while it is shown
    // (a reason being typed survives the feed's updates of the timeline).
    node.dataset.for = transferId;
    node.replaceChildren(
      el("h2", { id: "detail-h", text: `Timeline of ${transferId}` }),
      el("div", { id: "detail-body" }, el("p", { class: "loading", text: "loading…" })),
      operatorActions(transferId));
  }
  let detail;
  try {
    detail = await getJSON(`/api/transfers/${encodeURIComponent(transferId)}`);
  } catch (error) {
    if (view.selected !== transferId) return;
    $("detail-body").replaceChildren(el("p", { class: "error", role: "alert", text: error.message }));
    $("operator").hidden = true;
    return;
  }
  if (view.selected !== transferId) return;
  const timeline = el("table", { class: "timeline" },
    el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "time (UTC)" }), el("th", { scope: "col", text: "promise" }), el("th", { scope: "col", text: "what it recorded" }))),
    el("tbody", {}, ...detail.timeline.map((row) => el("tr", {}, el("td", { text: row.at_text.trim() }), el("td", { text: row.id || "" }), el("td", { text: row.step })))));
  const ledger = el("table", { class: "ledger" },
    el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "bank" }), el("th", { scope: "col", text: "op" }), el("th", { scope: "col", text: "as the bank has it" }))),
    el("tbody", {}, ...detail.ledger.map((row) => el("tr", { "data-op": row.kind }, el("td", { text: row.bank }), el("td", { text: `${transferId}-${row.kind}` }), el("td", { text: row.text })))));
  const status = detail.needs_attention ? `${detail.status} · NEEDS ATTENTION` : detail.status;
  const cancelled = detail.cancelled;
  const children = [
    el("p", { "data-detail": transferId }, el("span", { class: `badge ${STATUS_CLASS[detail.status] || ""}`, id: "detail-status", text: status }), ` ${detail.route}`, detail.reason ? ` · reason: ${detail.reason}` : ""),
    cancelled ? el("p", { id: "detail-cancelled" }, `cancelled by ${cancelled.by} at ${cancelled.at}: `, el("q", { text: cancelled.reason })) : null,
    el("h3", {}, "steps ", el("span", { class: "from-where", text: `(from the ${detail.kept_in}: each step is a promise)` })),
    el("div", { class: "scroll" }, timeline),
    el("h3", {}, "ledgers ", el("span", { class: "from-where", text: "(GET /entries/{op_id} on each bank)" })),
    el("div", { class: "scroll" }, ledger),
    el("h3", {}, "operator record ", el("span", { class: "from-where", text: `(each action taken on it: cancel, retry, kill, hold, release; from the ${detail.kept_in})` })),
    operatorRecord(detail.operator_actions || []),
    el("p", { class: "equiv" }, "same as ", el("code", { text: `crossbank status ${transferId}` })),
  ];
  const system = view.sections.system || {};
  if (system.local && !system.read_only && !detail.finished && !TERMINAL.includes(detail.status)) {
    const row = (view.sections.transfers || []).find((r) => r.transfer_id === transferId) || {};
    const kill = el("button", { type: "button", id: "kill-worker", class: "danger", disabled: !row.worker },
      row.worker ? `SIGKILL ${row.worker}, which runs this transfer` : "no live worker runs it now");
    kill.addEventListener("click", async () => {
      if (await act(kill, () => post("/api/workers/kill", { transfer_id: transferId }))) loadDetail(transferId);
    });
    const pid = ((view.sections.workers || { workers: [] }).workers.find((w) => w.name === row.worker) || {}).pid;
    children.push(el("div", { class: "action" }, kill, el("p", { class: "equiv" }, "same as ", el("code", { text: `kill -9 ${pid ?? "PID"}` }))));
  }
  $("detail-body").replaceChildren(...children.filter(Boolean));
  updateOperatorActions(detail);
}

const TERMINAL = ["committed", "compensated", "failed"];

function operatorRecord(actions) {
  if (!actions.length) return el("p", { id: "operator-record", class: "hint", text: "no operator action recorded" });
  return el("div", { class: "scroll" }, el("table", { id: "operator-record", class: "record" },
    el("thead", {}, el("tr", {}, ...["time (UTC)", "action", "by", "why", "what came of it"].map((name) => el("th", { scope: "col", text: name })))),
    el("tbody", {}, ...actions.map((action) => el("tr", { "data-action": action.action },
      el("td", { text: action.at_text }), el("td", { text: action.action }), el("td", { text: action.by }),
      el("td", { text: action.reason || "" }), el("td", { text: action.outcome }))))));
}

// Cancel (with a reason) and retry now: built once per transfer shown, updated on each load.
function operatorActions(transferId) {
  const reason = el("input", { id: "cancel-reason", maxlength: 200, autocomplete: "off", placeholder: "why: kept with the cancel by both banks" });
  const cancelCli = el("code", { id: "cancel-cli" });
  const showCancel = () => {
    const given = reason.value;
    cancelCli.textContent = `crossbank cancel ${transferId} --reason ${given.trim() ? shellQuote(given) : '"..."'}`;
  };
  reason.addEventListener("input", showCancel);
  showCancel();
  const cancel = el("button", { type: "submit", id: "cancel-transfer", class: "danger", text: "Cancel this transfer" });
  const form = el("form", { id: "cancel-form", class: "action" },
    el("label", { id: "cancel-reason-label" }, "reason (required, at most 200 characters)", reason),
    cancel,
    el("p", { class: "equiv" }, "same as ", cancelCli));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!reason.value.trim()) {
      say("a cancel needs a reason: say why, it is kept with the cancel", { error: true });
      reason.focus();
      return;
    }
    const answer = await act(cancel, () => post(`/api/transfers/${encodeURIComponent(transferId)}/cancel`, { reason: reason.value }));
    if (answer && answer.took_effect) reason.value = "";
    showCancel();
    if (answer && view.selected === transferId) loadDetail(transferId);
  });
  const retry = el("button", { type: "button", id: "retry-transfer", text: "Retry now" });
  retry.addEventListener("click", async () => {
    const answer = await act(retry, () => post(`/api/transfers/${encodeURIComponent(transferId)}/retry`, {}));
    if (answer && view.selected === transferId) loadDetail(transferId);
  });
  return el("div", { id: "operator", class: "operator", "data-transfer": transferId, hidden: true },
    el("h3", {}, "operator actions ", el("span", { class: "from-where", id: "operator-by" })),
    el("p", { id: "operator-read-only", class: "hint", hidden: true }),
    form,
    el("div", { class: "action", id: "retry-action" },
      retry,
      el("span", { id: "retry-hint", class: "hint" }),
      el("p", { class: "equiv" }, "same as ", el("code", { id: "retry-cli", text: `crossbank retry ${transferId}` }))));
}

function updateOperatorActions(detail) {
  const block = $("operator");
  if (!block || block.dataset.transfer !== detail.transfer_id) return;
  const system = view.sections.system || {};
  block.hidden = Boolean(detail.finished);
  if (detail.finished) return;
  const readOnly = Boolean(system.read_only);
  for (const id of ["cancel-transfer", "retry-transfer", "cancel-reason-label", "retry-hint"]) $(id).hidden = readOnly;
  for (const id of ["cancel-transfer", "retry-transfer", "cancel-reason"]) $(id).disabled = readOnly;
  const note = $("operator-read-only");
  note.hidden = !readOnly;
  note.textContent = readOnly ? "This console is read-only (CONSOLE_READ_ONLY): from a shell where crossbank runs, these commands do the same." : "";
  $("operator-by").textContent = system.operator && !readOnly ? `(recorded as by ${system.operator})` : "";
  $("retry-hint").textContent = detail.waiting
    ? " it is waiting between two attempts now"
    : " it is not waiting between attempts now (a retry changes nothing then)";
}

// -- the actions' command-line equivalents ----------------------------------------------

function updateEquivalents() {
  const id = $("tid").value.trim();
  $("start-cli").textContent = `crossbank transfer --from ${$("from").value.trim()} --to ${$("to").value.trim()} --amount ${$("amount").value.trim()}${id ? ` --id ${id}` : ""}`;
  const banks = view.sections.banks || {};
  const target = (banks.target && banks.target.url) || "$TARGET_BANK_URL";
  $("hold-cli").textContent = `curl -X PUT ${target}/admin/faults -d '{"faults": [{"action": "hold_before", "kind": "credit", "times": 1}]}'`;
  $("release-cli").textContent = `curl -X DELETE ${target}/admin/faults`;
  $("worker-cli").textContent = "crossbank worker  (with the demo's export line)";
  $("acct-cli").textContent = `crossbank accounts close|open ${$("acct-id").value.trim()} --bank ${$("acct-bank").value}`;
}

function wireActions() {
  for (const id of ["from", "to", "amount", "tid", "acct-id", "acct-bank"]) $(id).addEventListener("input", updateEquivalents);
  $("start-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = event.target.querySelector("button[type=submit]");
    const answer = await act(button, () => post("/api/transfers", {
      from: $("from").value.trim(), to: $("to").value.trim(), amount: $("amount").value.trim(), id: $("tid").value.trim() || null,
    }));
    if (answer) select(answer.transfer_id);
  });
  $("hold-credit").addEventListener("click", (e) => act(e.currentTarget, () => post("/api/faults/hold-credit")));
  $("release").addEventListener("click", (e) => act(e.currentTarget, () => post("/api/faults/release")));
  $("start-worker").addEventListener("click", (e) => act(e.currentTarget, () => post("/api/workers/start")));
  for (const action of ["open", "close"]) {
    $(`acct-${action}`).addEventListener("click", (e) => act(e.currentTarget, () => post("/api/accounts", {
      bank: $("acct-bank").value, account: $("acct-id").value.trim(), action,
    })));
  }
  for (const button of document.querySelectorAll("[data-filter]")) {
    button.addEventListener("click", () => {
      view.filter = button.dataset.filter;
      for (const other of document.querySelectorAll("[data-filter]")) other.setAttribute("aria-pressed", String(other === button));
      renderTransfers();
    });
  }
  $("login").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await post("/api/login", { token: $("token").value });
      $("token").value = "";
      $("login-error").textContent = "";
      boot();
    } catch (error) {
      $("login-error").textContent = error.message;
    }
  });
  updateEquivalents();
}

async function boot() {
  try {
    view.session = await getJSON("/api/session");
  } catch (error) {
    setConn(`the console does not answer: ${error.message}; retrying in 5 s`, "down");
    setTimeout(boot, 5000);
    return;
  }
  const locked = view.session.needs_token && !view.session.authorized;
  $("login").hidden = !locked;
  $("main").hidden = locked;
  if (locked) {
    setConn("needs its token", "down");
    $("token").focus();
    return;
  }
  if (!view.source) connect();
}

document.addEventListener("DOMContentLoaded", () => {
  wireActions();
  boot();
});
