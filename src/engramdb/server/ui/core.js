// The inspector's shared parts: building elements, talking to the API, times, diffs.
//
// Every value shown comes from the /v1 API called with the signed-in API key
// (sessionStorage, "Authorization: Bearer"); the server's grants decide what
// comes back, nothing is filtered here. The page is built with
// document.createElement and textContent only: memory text is untrusted and
// must never be parsed as HTML, so no HTML string is ever handed to the DOM.

export const KEY = "engramdb.apiKey";
export const PAGE = 25;
export const LAYERS = ["working", "episodic", "semantic", "procedural"];
// me: the signed-in principal; feed: the live feed's AbortController;
// unauthorized: what to do when the server refuses the key (set by app.js).
export const state = { me: null, feed: null, unauthorized: () => {} };

// -- building the page ---------------------------------------------------------------

export function el(tag, props, ...kids) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = String(value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    node.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return node;
}

// Replace a node's children, skipping the null / false left by optional parts.
export function put(node, ...kids) {
  node.replaceChildren(...kids.flat().filter((k) => k !== null && k !== undefined && k !== false));
}

export const main = () => document.getElementById("main");
export const empty = (text) => el("div", { class: "empty", text });
export const errorBox = (err) => el("div", { class: "error", role: "alert",
  text: err instanceof ApiError ? `${err.message} (${err.code})` : String(err.message || err) });
export const memoryLink = (id, label) => el("a", { href: `#/memory/${encodeURIComponent(id)}`,
  text: label || id });

export function utc(date) {
  return date.toISOString().replace("T", " ").replace(/\.\d+Z$|Z$/, " UTC");
}

// A time in the viewer's zone, with UTC on hover.
export function when(iso) {
  if (!iso) return el("span", { class: "muted", text: "—" });
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return el("span", { text: String(iso) });
  return el("time", { datetime: date.toISOString(), title: utc(date),
    text: date.toLocaleString() });
}

export function fields(pairs) {
  const dl = el("dl", { class: "fields" });
  for (const [name, value] of pairs) {
    if (value === null || value === undefined || value === "") continue;
    dl.append(el("dt", { text: name }), el("dd", {}, value));
  }
  return dl;
}

export function table(headers, rows, emptyText) {
  if (!rows.length) return empty(emptyText);
  return el("table", {},
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) =>
      c instanceof Node && c.tagName === "TD" ? c : el("td", {}, c))))));
}

export function badge(text, kind) { return el("span", { class: `badge ${kind || ""}`, text }); }

export function json(value) {
  if (value === null || value === undefined) return null;
  if (typeof value === "object" && !Object.keys(value).length) return null;
  return el("code", { text: JSON.stringify(value) });
}

// Client-side pages over a list the server returned (lists are asked for one row
// more than the page, so "next" is known without counting).
export function pager(page, hasNext, go) {
  return el("div", { class: "pager" },
    el("button", { type: "button", disabled: page === 0, onclick: () => go(page - 1),
      text: "← Previous" }),
    el("span", { class: "muted", text: `Page ${page + 1}` }),
    el("button", { type: "button", disabled: !hasNext, onclick: () => go(page + 1),
      text: "Next →" }));
}

// A table over rows already fetched, a page at a time.
export function pagedTable(headers, rows, emptyText) {
  const box = el("div");
  const show = (page) => put(box, table(headers, rows.slice(page * PAGE, (page + 1) * PAGE),
    emptyText), rows.length > PAGE ? pager(page, rows.length > (page + 1) * PAGE, show) : null);
  show(0);
  return box;
}

// -- talking to the API ----------------------------------------------------------------

export class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

export function authHeaders(extra) {
  const key = sessionStorage.getItem(KEY);
  if (!key) throw new ApiError(401, "unauthenticated", "sign in with an API key first");
  return { Authorization: `Bearer ${key}`, ...extra };
}

export const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export async function api(method, path, body, attempt = 0) {
  const init = { method, headers: authHeaders({ Accept: "application/json" }),
    cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const retry = Number(response.headers.get("Retry-After"));
  if ((response.status === 429 || response.status === 503) && attempt < 2 && retry > 0 && retry <= 5) {
    await pause(retry * 1000);  // the key's rate limit or the server's back-pressure
    return api(method, path, body, attempt + 1);
  }
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  if (!response.ok) {
    const error = (data && data.error) || {};
    const err = new ApiError(response.status, error.code || `http_${response.status}`,
      error.message || `the server answered ${response.status}`);
    if (response.status === 401) state.unauthorized(err.message);
    throw err;
  }
  return data;
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value === null || value === undefined || value === "") continue;
    search.append(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export const head = async () => (await api("GET", "/v1/info")).head;

// -- one memory: fields, as-of slider, history with diffs, readers ------------------

const tokens = (text) => String(text || "").split(/(\s+)/).filter((t) => t !== "");

// Word diff by longest common subsequence; returns [op, text] with op in "=", "+", "-".
export function diff(before, after) {
  const a = tokens(before); const b = tokens(after);
  if (a.length * b.length > 4e6) return [["-", String(before)], ["+", String(after)]];
  const lcs = Array.from({ length: a.length + 1 }, () => new Uint32Array(b.length + 1));
  for (let i = a.length - 1; i >= 0; i -= 1) {
    for (let j = b.length - 1; j >= 0; j -= 1) {
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const out = [];
  let i = 0; let j = 0;
  const push = (op, t) => {
    if (out.length && out[out.length - 1][0] === op) out[out.length - 1][1] += t;
    else out.push([op, t]);
  };
  while (i < a.length && j < b.length) {
    if (a[i] === b[j]) { push("=", a[i]); i += 1; j += 1; }
    else if (lcs[i + 1][j] >= lcs[i][j + 1]) { push("-", a[i]); i += 1; }
    else { push("+", b[j]); j += 1; }
  }
  while (i < a.length) { push("-", a[i]); i += 1; }
  while (j < b.length) { push("+", b[j]); j += 1; }
  return out;
}

export function diffView(before, after) {
  return el("div", { class: "text diff" }, diff(before, after).map(([op, t]) =>
    (op === "=" ? t : el(op === "+" ? "ins" : "del", { text: t }))));
}
