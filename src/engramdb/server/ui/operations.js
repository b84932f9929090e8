// Operations: agents, grants and lifecycle (read-only), verify and checkpoints, the live feed.


import {
  LAYERS, api, authHeaders, badge, el, empty, errorBox,
  fields, head, json, memoryLink, pagedTable, pause, put,
  query, state, when,
} from "./core.js";

// -- agents, grants, lifecycle policies (read-only) ------------------------------

export async function viewAccess(box) {
  const me = state.me;
  box.append(el("h1", { text: "Agents, grants and lifecycle" }),
    el("div", { class: "card" }, fields([["signed in as", me.name],
      ["roles", me.roles.join(", ") || "—"], ["trust", String(me.trust)],
      ["admin", me.is_admin ? "yes" : "no"]])));
  if (!me.is_admin) {
    const mine = await api("GET", "/v1/me/grants");
    box.append(el("h2", { text: `Your grants (${mine.grants.length})` }),
      el("div", { id: "my-grants" }, pagedTable(["Grantee", "Pattern", "Actions", "Granted by",
        "Since (tx)"], mine.grants.map((g) => [g.grantee, el("code", { text: g.pattern }),
        g.actions.join(", "), g.granted_by, String(g.tx_from)]),
      "No grants: this key can read and write nothing until an admin grants it a namespace.")),
      empty("Listing other agents, their grants and lifecycle policies needs an admin key; " +
        "the server refuses it for this key. This view is read-only for everyone."));
    return;
  }
  const [agents, grants, names] = await Promise.all([api("GET", "/v1/admin/agents"),
    api("GET", "/v1/admin/grants"), api("GET", "/v1/namespaces")]);
  box.append(el("h2", { text: `Agents (${agents.agents.length})` }),
    pagedTable(["Name", "Kind", "Roles", "Trust", "Status", "Created (tx)"],
      agents.agents.map((a) => [a.name, a.kind, a.roles.join(", "), String(a.trust),
        a.status === "active" ? badge("active", "good") : badge(a.status, "warn"), String(a.created_tx)]),
      "No agents yet."),
    el("h2", { text: `Grants (${grants.grants.length})` }),
    pagedTable(["Grantee", "Pattern", "Actions", "Granted by", "Since (tx)"],
      grants.grants.map((g) => [g.grantee, el("code", { text: g.pattern }), g.actions.join(", "),
        g.granted_by, String(g.tx_from)]), "No grants: agents can read only their own namespace."));
  const ns = el("input", { id: "lc-ns", list: "lc-names", size: 30, placeholder: "a namespace" });
  const layer = el("select", { id: "lc-layer" }, el("option", { value: "", text: "all" }),
    LAYERS.map((l) => el("option", { value: l, text: l })));
  const out = el("div", { id: "lc-policy", "aria-live": "polite" });
  const shown = (name, value) => {
    if (value === null || value === undefined) return null;
    if (DURATIONS.includes(name) && typeof value === "number") return duration(value);
    return typeof value === "object" ? json(value) : String(value);
  };
  box.append(el("h2", { text: "Lifecycle policy in force" }),
    el("datalist", { id: "lc-names" }, names.namespaces.map((n) => el("option", { value: n }))),
    el("form", { class: "row", onsubmit: async (event) => {
      event.preventDefault();
      try {
        const r = await api("GET", `/v1/admin/lifecycle${query({ namespace: ns.value.trim(),
          layer: layer.value })}`);
        put(out, r.policy ? el("div", { class: "card" }, fields(Object.entries(r.policy)
          .map(([k, v]) => [k, shown(k, v)])))
          : empty("No lifecycle policy applies here: memories keep until erased."));
      } catch (err) { put(out, errorBox(err)); }
    } }, el("label", {}, "Namespace", ns), el("label", {}, "Layer", layer),
    el("button", { type: "submit", text: "Show policy" })),
    out);
}

// Lifecycle durations arrive in microseconds.
const DURATIONS = ["ttl", "half_life"];
function duration(micros) {
  const seconds = micros / 1e6;
  for (const [unit, size] of [["day", 86400], ["hour", 3600], ["minute", 60]]) {
    if (seconds >= size && seconds % size === 0) {
      const n = seconds / size;
      return `${n} ${unit}${n === 1 ? "" : "s"}`;
    }
  }
  return `${seconds} s`;
}

// -- verify and checkpoints ---------------------------------------------------------

export async function viewAudit(box) {
  const info = await api("GET", "/v1/info");
  const top = info.head;
  const cp = el("div", { id: "checkpoint", "aria-live": "polite" });
  const showCheckpoint = (c) => el("div", { class: "card" }, fields([
    ["signed", when(c.created_at)], ["events covered", String(c.tree_size)],
    ["head", el("code", { text: `${c.head_seq} · ${c.head_hash}` })],
    ["Merkle root", el("code", { text: c.merkle_root })], ["key id", el("code", { text: c.key_id })]]));
  put(cp, info.last_checkpoint ? showCheckpoint(info.last_checkpoint)
    : empty("No checkpoint has been signed on this database yet."));
  const cpSection = [el("h2", { text: "Last checkpoint" }),
    el("p", { class: "muted", text: "The last checkpoint signed on this database. Keep checkpoints " +
      "outside the database (engram audit checkpoint writes them to a file): a later rewrite of " +
      "the log no longer matches them." }), cp];
  box.append(el("h1", { text: "Verify" }),
    el("div", { class: "card" }, fields([["log head", `event ${top.seq}, transaction ${top.tx}`]])));
  if (!state.me.is_admin) {
    box.append(empty("Verifying the log and signing checkpoints need an admin key."), ...cpSection);
    return;
  }
  const report = el("div", { id: "verify-report", "aria-live": "polite" });
  box.append(el("div", { class: "row" },
    el("button", { type: "button", class: "primary", id: "run-verify", text: "Verify the log now",
      onclick: async () => {
        put(report, el("p", { class: "muted", text: "Verifying…" }));
        try {
          const r = await api("POST", "/v1/verify");
          put(report, el("div", { class: "card" },
            el("p", {}, r.ok ? badge("verified", "good") : badge("FAILED", "bad")),
            fields([["events checked", String(r.events_checked)], ["rows checked", String(r.rows_checked)],
              ["head", el("code", { text: `${r.head_seq} · ${r.head_hash}` })],
              ["first bad event", r.first_bad_seq === null ? null : String(r.first_bad_seq)],
              ["problem", r.problem], ["checked at", when(new Date().toISOString())]])));
        } catch (err) { put(report, errorBox(err)); }
      } }),
    el("button", { type: "button", id: "sign-checkpoint", text: "Sign a checkpoint",
      onclick: async () => {
        try {
          const c = await api("POST", "/v1/audit/checkpoints");
          put(cp, showCheckpoint(c));
        } catch (err) { put(cp, errorBox(err)); }
      } })),
  el("h2", { text: "Last verify" }), report, ...cpSection);
  put(report, await lastVerify());
}

// The last verify this server process ran, from its Prometheus metrics (admin keys;
// absent when the operator turned /metrics off).
async function lastVerify() {
  const none = empty("No verify has run in this server process yet.");
  let text;
  try {
    const response = await fetch("/metrics", { headers: authHeaders({ Accept: "text/plain" }),
      cache: "no-store", credentials: "omit" });
    if (!response.ok) return none;
    text = await response.text();
  } catch (_) {
    return none;
  }
  const value = (name) => {
    const match = text.match(new RegExp(`^${name} (\\S+)$`, "m"));
    return match ? Number(match[1]) : null;
  };
  const ok = value("engram_last_verify_ok");
  const at = value("engram_last_verify_timestamp_seconds");
  if (ok === null || ok < 0 || at === null) return none;
  return el("div", { class: "card" },
    el("p", {}, ok === 1 ? badge("verified", "good") : badge("FAILED", "bad"),
      " last run by this server at ", when(new Date(at * 1000).toISOString())),
    fields([["events checked", String(value("engram_last_verify_events_checked"))]]));
}

// -- live change feed --------------------------------------------------------------

export function stopFeed() {
  if (state.feed) { state.feed.abort(); state.feed = null; }
}

// Server-Sent Events read with fetch: EventSource cannot send the Authorization
// header, and a key (or any token) in the URL would end up in logs and history.
async function follow(namespace, since, onEvent, onStatus, signal) {
  let cursor = since;
  while (!signal.aborted) {
    try {
      const response = await fetch(`/v1/changes/stream${query({ namespace, since: cursor })}`, {
        headers: authHeaders({ Accept: "text/event-stream" }), cache: "no-store",
        credentials: "omit", signal });
      if (!response.ok) {
        let message = `the server answered ${response.status}`;
        try { message = (await response.json()).error.message; } catch (_) { /* keep */ }
        if (response.status === 401) { state.unauthorized(message); return; }
        onStatus(message, true);
        return;
      }
      onStatus("following", false);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end); buffer = buffer.slice(end + 2);
          let data = ""; let kind = "message";
          for (const line of block.split("\n")) {
            if (line.startsWith("id:")) cursor = Number(line.slice(3).trim());
            else if (line.startsWith("data:")) data += line.slice(5).trim();
            else if (line.startsWith("event:")) kind = line.slice(6).trim();
          }
          if (!data) continue;
          const payload = JSON.parse(data);
          if (kind === "error") { onStatus(payload.error.message, true); return; }
          onEvent(payload);
        }
      }
    } catch (err) {
      if (signal.aborted) return;
      onStatus(`disconnected (${err.message}); retrying`, true);
    }
    await pause(1500);
  }
}

export async function viewFeed(box) {
  const top = await head();
  const ns = el("input", { id: "feed-ns", value: "**", size: 20 });
  const kind = el("input", { id: "feed-kind", size: 16, placeholder: "e.g. memory." });
  const from = el("select", { id: "feed-from" }, el("option", { value: "now", text: "new events" }),
    el("option", { value: "start", text: "the beginning" }));
  const status = el("span", { class: "muted", id: "feed-status", "aria-live": "polite" });
  const body = el("tbody");
  const list = el("table", { id: "feed" }, el("thead", {}, el("tr", {},
    ["Seq", "Time", "Kind", "Namespace", "Actor", "Subject"].map((h) => el("th", { scope: "col", text: h })))), body);
  const none = empty("No matching events yet: changes you may read appear here as they happen.");
  const events = [];

  function matches(e) { return !kind.value.trim() || String(e.kind).includes(kind.value.trim()); }
  function row(e) {
    const memory = String(e.kind).startsWith("memory.") && e.subject_ref;
    return el("tr", {}, el("td", { class: "num", text: String(e.seq) }), el("td", {}, when(e.recorded_at)),
      el("td", {}, el("code", { text: e.kind })), el("td", {}, e.namespace ? el("code", { text: e.namespace }) : "—"),
      el("td", { text: e.actor || "—" }),
      el("td", {}, memory ? memoryLink(e.subject_ref) : (e.subject_ref || "—")));
  }
  function redraw() {
    const shown = events.filter(matches).slice(0, 200);
    put(body, ...shown.map(row));
    none.hidden = shown.length > 0;
  }
  function start() {
    stopFeed();
    events.length = 0; redraw();
    const controller = new AbortController();
    state.feed = controller;
    follow(ns.value || "**", from.value === "now" ? top.seq : 0, (e) => {
      events.unshift(e);
      if (events.length > 1000) events.length = 1000;
      if (matches(e)) redraw();
    }, (text, bad) => { status.textContent = text; status.className = bad ? "error" : "muted"; },
    controller.signal);
  }
  kind.addEventListener("input", redraw);
  box.append(el("h1", { text: "Live change feed" }),
    el("form", { class: "row", onsubmit: (event) => { event.preventDefault(); start(); } },
      el("label", {}, "Namespace", ns), el("label", {}, "Kind contains", kind),
      el("label", {}, "Start from", from),
      el("button", { class: "primary", type: "submit", text: "Follow" }),
      el("button", { type: "button", text: "Stop", onclick: () => { stopFeed(); status.textContent = "stopped"; } }),
      status),
    el("p", { class: "muted", text: "Newest first; the latest 200 matching events are shown." }),
    list, none);
  start();
}
