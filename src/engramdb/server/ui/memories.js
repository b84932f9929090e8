// Memories: browsing and hybrid search, one memory's history and as-of slider, the timeline.

import {
  LAYERS, PAGE, api, badge, diffView, el,
  empty, errorBox, fields, head, json, memoryLink,
  pagedTable, pager, put, query, state, table,
  when,
} from "./core.js";

// -- memories and search -------------------------------------------------------------

function scoreParts(why) {
  const order = ["lexical", "semantic", "relevance", "recency", "importance", "context",
    "speaker", "trust"];
  const names = [...order.filter((n) => n in why),
    ...Object.keys(why).filter((n) => !order.includes(n) && !n.startsWith("text_"))];
  const text = names.map((n) => `${n} ${Number(why[n]).toFixed(2)}`).join(" · ");
  return el("div", { class: "parts", title: JSON.stringify(why), text });
}

function memoryRow(m, hit) {
  const cells = [when(m.recorded_at), el("code", { text: m.namespace }), m.layer,
    m.author, el("td", { class: "text" }, memoryLink(m.id, m.text)), `v${m.version}`,
    m.status];
  if (hit) {
    cells.push(el("td", {}, el("strong", { text: Number(hit.score).toFixed(3) }),
      hit.contested ? badge("contested", "bad") : null, scoreParts(hit.why || {})));
  }
  return cells;
}

export async function viewMemories(box) {
  const heading = el("h1", { text: "Memories" });
  const q = el("input", { id: "q", type: "search", placeholder: "Search (hybrid recall)",
    size: 40, "aria-label": "Search text" });
  const ns = el("input", { id: "ns", value: "**", size: 24, "aria-label": "Namespace glob" });
  const layer = el("select", { id: "layer" }, el("option", { value: "", text: "all" }),
    LAYERS.map((l) => el("option", { value: l, text: l })));
  const results = el("div", { "aria-live": "polite" });
  const side = el("div", { class: "side" }, el("h2", { text: "Namespaces" }));
  let page = 0;

  async function load() {
    put(results, el("p", { class: "muted", text: "Loading…" }));
    const k = (page + 1) * PAGE + 1;
    try {
      let rows;
      let headers = ["Recorded", "Namespace", "Layer", "Author", "Text", "Ver.", "Status"];
      if (q.value.trim()) {
        const r = await api("POST", "/v1/recall", { query: q.value.trim(),
          namespace: ns.value || "**", k, layers: layer.value ? [layer.value] : null });
        rows = r.hits.map((h) => memoryRow(h.memory, h));
        headers = [...headers, "Score (parts)"];
      } else {
        const r = await api("GET", `/v1/memories${query({ namespace: ns.value || "**", k,
          layers: layer.value })}`);
        rows = r.memories.map((m) => memoryRow(m));
      }
      const shown = rows.slice(page * PAGE, (page + 1) * PAGE);
      put(results, 
        table(headers, shown, q.value.trim() ? "No memory you may read matches this search."
          : "No memories you may read here yet."),
        rows.length > PAGE || page > 0 ? pager(page, rows.length > (page + 1) * PAGE,
          (p) => { page = p; load(); }) : null);
    } catch (err) {
      put(results, errorBox(err));
    }
  }

  const form = el("form", { class: "row", role: "search", onsubmit: (event) => {
    event.preventDefault(); page = 0; load();
  } }, el("label", {}, "Search", q), el("label", {}, "Namespace", ns),
  el("label", {}, "Layer", layer),
  el("button", { class: "primary", type: "submit", text: "Search" }));
  box.append(heading, el("div", { class: "split" }, side,
    el("div", {}, form, results)));
  const names = (await api("GET", "/v1/namespaces")).namespaces;
  if (!names.length) side.append(empty("No readable namespace holds memories."));
  const all = el("button", { type: "button", "aria-pressed": "true", text: "All (**)" });
  const buttons = [all, ...names.map((n) => el("button", { type: "button",
    "aria-pressed": "false", text: n }))];
  buttons.forEach((b, i) => b.addEventListener("click", () => {
    buttons.forEach((o) => o.setAttribute("aria-pressed", String(o === b)));
    ns.value = i === 0 ? "**" : names[i - 1];
    page = 0;
    load();
  }));
  side.append(...buttons);
  await load();
}

const TRACKED = ["namespace", "layer", "status", "subject", "predicate", "value",
  "valid_from", "valid_to", "importance", "confidence", "expires_at", "metadata"];

function changedFields(prev, next) {
  const rows = [];
  for (const name of TRACKED) {
    // An older version reads "superseded" once replaced: that is not a change it made.
    if (name === "status" && ["active", "superseded"].includes(next.status)) continue;
    const a = JSON.stringify(prev[name] ?? null); const b = JSON.stringify(next[name] ?? null);
    if (a !== b) rows.push([name, el("span", {}, el("del", { text: a }), " → ", el("ins", { text: b }))]);
  }
  return rows;
}

function memoryCard(m) {
  return el("div", { class: "card" },
    el("div", { class: "text memory-text", text: m.text }),
    el("hr"),
    fields([["id", el("code", { text: m.id })], ["namespace", el("code", { text: m.namespace })],
      ["layer", m.layer], ["version", String(m.version)], ["status", m.status],
      ["author", m.author], ["source", m.source],
      ["fact", m.subject ? `${m.subject} · ${m.predicate} = ${JSON.stringify(m.value)}` : null],
      ["valid", el("span", {}, when(m.valid_from), " → ", when(m.valid_to))],
      ["recorded", when(m.recorded_at)],
      ["transactions", `${m.tx_from} → ${m.tx_to ?? "now"}`],
      ["confidence", String(m.confidence)], ["importance", String(m.importance)],
      ["expires", m.expires_at ? when(m.expires_at) : null],
      ["metadata", json(m.metadata)],
      ["conflicts", (m.conflicts || []).length ? String(m.conflicts.length) : null]]));
}

export async function viewMemory(box, id) {
  const [current, history, top] = await Promise.all([
    api("GET", `/v1/memories/${encodeURIComponent(id)}`),
    api("GET", `/v1/memories/${encodeURIComponent(id)}/history`), head()]);
  const versions = history.versions;
  box.append(el("h1", { text: `Memory v${current.version}` }), memoryCard(current));

  // As-of slider: replays this memory's reads at any past transaction.
  const first = Math.max(1, versions[0].tx_from - 1);
  const last = Math.max(top.tx, current.tx_from);
  const slider = el("input", { id: "as-of", type: "range", min: first, max: last, value: last,
    step: 1, "aria-label": "Read as of transaction" });
  const label = el("output", { for: "as-of", id: "as-of-label" });
  const seen = el("div", { id: "as-of-result", "aria-live": "polite" });
  let timer = null;
  async function readAt() {
    const at = Number(slider.value);
    label.textContent = at >= last ? `transaction ${at} (now)` : `transaction ${at}`;
    try {
      const m = await api("GET", `/v1/memories/${encodeURIComponent(id)}${query({ as_of: at })}`);
      if (Number(slider.value) !== at) return;
      put(seen, el("p", {}, badge(`v${m.version}`), badge(m.status),
        " by ", m.author, " · recorded ", when(m.recorded_at)),
      el("div", { class: "text as-of-text", text: m.text }));
    } catch (err) {
      if (Number(slider.value) !== at) return;
      put(seen, err.status === 404
        ? empty(`Not recorded yet (or not readable by you) at transaction ${at}.`)
        : errorBox(err));
    }
  }
  slider.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(readAt, 150); });
  const ticks = el("div", { class: "ticks" }, el("span", { class: "muted", text: "Jump to:" }),
    versions.slice(-12).map((v) => el("button", { type: "button", text: `v${v.version} (tx ${v.tx_from})`,
      onclick: () => { slider.value = v.tx_from; readAt(); } })));
  box.append(el("h2", { text: "As of" }), el("div", { class: "slider" },
    el("p", { class: "muted", text: "Move the slider to read this memory as the database " +
      "held it at an earlier transaction (an as_of read on the server)." }),
    slider, el("p", {}, "Reading at ", label), ticks, seen));
  readAt();

  box.append(el("h2", { text: `History (${versions.length} version${versions.length === 1 ? "" : "s"})` }));
  // Newest first, a page at a time; each version is diffed against the one before it.
  const newest = versions.slice().reverse();
  const list = el("div", { id: "history" });
  const showHistory = (page) => {
    put(list, newest.slice(page * PAGE, (page + 1) * PAGE).map((v) => {
      const prev = versions.find((p) => p.version === v.version - 1);
      const changes = prev ? changedFields(prev, v) : [];
      return el("div", { class: "card version" },
        el("p", {}, el("strong", { text: `v${v.version}` }), " ", badge(v.status),
          ` by ${v.author} · recorded `, when(v.recorded_at),
          ` · tx ${v.tx_from} → ${v.tx_to ?? "now"} · valid `, when(v.valid_from), " → ",
          when(v.valid_to)),
        prev ? diffView(prev.text, v.text) : el("div", { class: "text", text: v.text }),
        changes.length ? fields(changes) : null);
    }), newest.length > PAGE ? pager(page, newest.length > (page + 1) * PAGE, showHistory) : null);
  };
  showHistory(0);
  box.append(list);

  const readers = el("div", { "aria-live": "polite" });
  box.append(el("h2", { text: "Who read it" }), el("div", { class: "row" },
    el("button", { type: "button", id: "load-readers", text: "Show recorded reads",
      onclick: async () => {
        try {
          const r = await api("GET", `/v1/memories/${encodeURIComponent(id)}/readers`);
          put(readers, table(["Principal", "Time", "Version"],
            r.reads.map((x) => [x.principal, when(x.time), `v${x.version}`]),
            "No recorded reads (read auditing may be off for this namespace)."));
        } catch (err) {
          put(readers, err.status === 403
            ? empty("Only a principal with admin on this namespace may see who read it.")
            : errorBox(err));
        }
      } })), readers);
}

// -- timeline: the database (or one agent's view) at a past transaction ------------

export async function viewTimeline(box) {
  const top = await head();
  const admin = state.me.is_admin;
  const q = el("input", { id: "tl-query", type: "search", size: 30,
    placeholder: admin ? "optional: a query" : "what to look for" });
  const ns = el("input", { id: "tl-ns", value: "**", size: 20 });
  const agent = admin ? el("input", { id: "tl-agent", size: 16, placeholder: state.me.name,
    list: "tl-agents" }) : null;
  const agents = admin ? el("datalist", { id: "tl-agents" }) : null;
  if (admin) {
    api("GET", "/v1/admin/agents").then((r) => put(agents, r.agents.map((a) =>
      el("option", { value: a.name })))).catch(() => {});
  }
  const slider = el("input", { id: "tl-slider", type: "range", min: 1,
    max: Math.max(1, top.tx), value: Math.max(1, top.tx), step: 1,
    "aria-label": "Transaction to replay" });
  // Or a moment in the viewer's zone: the server reads at the last transaction before it.
  const moment = el("input", { id: "tl-time", type: "datetime-local", step: 1 });
  const label = el("output", { for: "tl-slider", id: "tl-label" });
  const results = el("div", { id: "tl-results", "aria-live": "polite" });
  let timer = null; let ticket = 0;

  const show = (rows) => put(results, pagedTable(
    ["Recorded", "Namespace", "Author", "Text", "Ver.", "Status"],
    rows.map((m) => [when(m.recorded_at), el("code", { text: m.namespace }), m.author,
      el("td", { class: "text" }, memoryLink(m.id, m.text)), `v${m.version}`, m.status]),
    "Nothing readable at this point."));

  async function load() {
    const mine = ++ticket;  // a slower earlier answer must not overwrite a later one
    const time = moment.value ? new Date(moment.value) : null;
    const at = time && !Number.isNaN(time.getTime()) ? time.toISOString() : Number(slider.value);
    put(label, typeof at === "number" ? `transaction ${at} of ${top.tx}`
      : el("span", {}, "the moment ", when(at)));
    const text = q.value.trim();
    const who = agent && agent.value.trim();
    try {
      let memories;
      if (admin) {
        const body = { agent: who || state.me.name, at, namespace: ns.value || "**" };
        if (text) Object.assign(body, { query: text, k: 200 });
        const r = await api("POST", "/v1/knowledge", body);
        memories = r.recall ? r.recall.hits.map((h) => h.memory) : r.memories;
      } else if (text) {
        const r = await api("POST", "/v1/recall",
          { query: text, namespace: ns.value || "**", as_of: at, k: 200 });
        memories = r.hits.map((h) => h.memory);
      } else {
        put(results, empty("Type what to look for: recall then reads the " +
          "database as it was then."));
        return;
      }
      if (mine !== ticket) return;
      show(memories);
    } catch (err) {
      if (mine === ticket) put(results, errorBox(err));
    }
  }

  slider.addEventListener("input", () => {
    moment.value = "";
    clearTimeout(timer); timer = setTimeout(load, 200);
  });
  moment.addEventListener("change", load);
  box.append(el("h1", { text: admin ? "Timeline and knowledge at T" : "Timeline" }),
    el("p", { class: "muted", text: admin
      ? "Replay what a principal could read at any past transaction, with the grants it " +
        "held then (leave the agent empty for yourself). With a query: the recall it would have got."
      : "Replay a search at any past transaction, with your own grants." }),
    el("form", { class: "row", onsubmit: (event) => { event.preventDefault(); load(); } },
      el("label", {}, "Query", q), el("label", {}, "Namespace", ns),
      agent ? el("label", {}, "Agent", agent, agents) : null,
      el("button", { class: "primary", type: "submit", text: "Replay" })),
    el("div", { class: "slider" }, slider, el("p", {}, "Reading at ", label,
      el("button", { type: "button", text: "Now", onclick: () => {
        moment.value = ""; slider.value = top.tx; load();
      } })),
    el("label", {}, "…or at a moment (your time zone)", moment)),
    results);
  await load();
}
