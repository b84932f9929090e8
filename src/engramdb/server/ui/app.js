// EngramDB inspector: one vanilla script, no build step, no third-party code.
//
// Every value shown comes from the /v1 API called with the signed-in API key
// (sessionStorage, "Authorization: Bearer"); the server's grants decide what
// comes back, nothing is filtered here. The page is built with
// document.createElement and textContent only: memory text is untrusted and
// must never be parsed as HTML, so no HTML string is ever handed to the DOM.
"use strict";

(() => {
  const KEY = "engramdb.apiKey";
  const CHECKPOINT = "engramdb.lastCheckpoint";
  const PAGE = 25;
  const LAYERS = ["working", "episodic", "semantic", "procedural"];
  const state = { me: null, feed: null };

  // -- building the page ---------------------------------------------------------------

  function el(tag, props, ...kids) {
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
  function put(node, ...kids) {
    node.replaceChildren(...kids.flat().filter((k) => k !== null && k !== undefined && k !== false));
  }

  const main = () => document.getElementById("main");
  const empty = (text) => el("div", { class: "empty", text });
  const errorBox = (err) => el("div", { class: "error", role: "alert",
    text: err instanceof ApiError ? `${err.message} (${err.code})` : String(err.message || err) });
  const memoryLink = (id, label) => el("a", { href: `#/memory/${encodeURIComponent(id)}`,
    text: label || id });

  function utc(date) {
    return date.toISOString().replace("T", " ").replace(/\.\d+Z$|Z$/, " UTC");
  }

  // A time in the viewer's zone, with UTC on hover.
  function when(iso) {
    if (!iso) return el("span", { class: "muted", text: "—" });
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return el("span", { text: String(iso) });
    return el("time", { datetime: date.toISOString(), title: utc(date),
      text: date.toLocaleString() });
  }

  function fields(pairs) {
    const dl = el("dl", { class: "fields" });
    for (const [name, value] of pairs) {
      if (value === null || value === undefined || value === "") continue;
      dl.append(el("dt", { text: name }), el("dd", {}, value));
    }
    return dl;
  }

  function table(headers, rows, emptyText) {
    if (!rows.length) return empty(emptyText);
    return el("table", {},
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) =>
        c instanceof Node && c.tagName === "TD" ? c : el("td", {}, c))))));
  }

  function badge(text, kind) { return el("span", { class: `badge ${kind || ""}`, text }); }

  function json(value) {
    if (value === null || value === undefined) return null;
    if (typeof value === "object" && !Object.keys(value).length) return null;
    return el("code", { text: JSON.stringify(value) });
  }

  // Client-side pages over a list the server returned (lists are asked for one row
  // more than the page, so "next" is known without counting).
  function pager(page, hasNext, go) {
    return el("div", { class: "pager" },
      el("button", { type: "button", disabled: page === 0, onclick: () => go(page - 1),
        text: "← Previous" }),
      el("span", { class: "muted", text: `Page ${page + 1}` }),
      el("button", { type: "button", disabled: !hasNext, onclick: () => go(page + 1),
        text: "Next →" }));
  }

  // -- talking to the API ----------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }

  function authHeaders(extra) {
    const key = sessionStorage.getItem(KEY);
    if (!key) throw new ApiError(401, "unauthenticated", "sign in with an API key first");
    return { Authorization: `Bearer ${key}`, ...extra };
  }

  const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function api(method, path, body, attempt = 0) {
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
      if (response.status === 401) signOut(err.message);
      throw err;
    }
    return data;
  }

  function query(params) {
    const search = new URLSearchParams();
    for (const [name, value] of Object.entries(params)) {
      if (value === null || value === undefined || value === "") continue;
      search.append(name, String(value));
    }
    const text = search.toString();
    return text ? `?${text}` : "";
  }

  const head = async () => (await api("GET", "/v1/info")).head;

  // -- sign-in and navigation ------------------------------------------------------------

  const VIEWS = [
    ["memories", "Memories", viewMemories],
    ["timeline", "Timeline", viewTimeline],
    ["conflicts", "Conflicts", viewConflicts],
    ["decisions", "Decisions", viewDecisions],
    ["access", "Agents & grants", viewAccess],
    ["audit", "Verify", viewAudit],
    ["feed", "Live feed", viewFeed],
  ];
  const DETAIL = { memory: viewMemory, decision: viewDecision };

  function signOut(message) {
    sessionStorage.removeItem(KEY);
    state.me = null;
    stopFeed();
    viewSignIn(message);
  }

  function viewSignIn(message) {
    document.getElementById("nav").replaceChildren();
    document.getElementById("who").replaceChildren();
    const input = el("input", { id: "api-key", type: "password", autocomplete: "off",
      spellcheck: "false", required: true, placeholder: "ek_…" });
    const status = el("div", { "aria-live": "polite" });
    if (message) status.append(errorBox(new Error(message)));
    const form = el("form", { class: "card", onsubmit: async (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY, input.value.trim());
      try {
        state.me = await api("GET", "/v1/me");
      } catch (err) {
        sessionStorage.removeItem(KEY);
        put(status, errorBox(err));
        return;
      }
      input.value = "";
      if (!location.hash || location.hash === "#/") location.hash = "#/memories";
      else render();
    } },
    el("h1", { text: "Sign in" }),
    el("p", { class: "muted", text: "Use an agent's API key to see exactly what that agent " +
      "may read, or an admin key. The key stays in this tab (sessionStorage) and is sent " +
      "only to this server, in the Authorization header." }),
    el("label", { for: "api-key" }, "API key", input),
    el("div", { class: "row" }, el("button", { class: "primary", type: "submit",
      text: "Sign in" })),
    status);
    put(main(), el("div", { class: "signin" }, form));
    input.focus();
  }

  function renderChrome(current) {
    const nav = document.getElementById("nav");
    put(nav, ...VIEWS.map(([name, label]) => el("a", { href: `#/${name}`,
      "aria-current": name === current ? "page" : null, text: label })));
    const me = state.me;
    document.getElementById("who").replaceChildren(
      el("span", { text: me.name }),
      me.is_admin ? badge("admin", "warn") : badge(me.roles.length ? me.roles.join(", ") : "agent"),
      el("button", { type: "button", onclick: () => signOut(), text: "Sign out" }));
  }

  async function render() {
    stopFeed();
    if (!sessionStorage.getItem(KEY)) { viewSignIn(); return; }
    if (!state.me) {
      try { state.me = await api("GET", "/v1/me"); } catch (err) { return; }
    }
    const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
    const arg = rest.length ? decodeURIComponent(rest.join("/")) : null;
    const view = VIEWS.find(([n]) => n === name);
    const detail = DETAIL[name];
    if (!view && !(detail && arg)) { location.hash = "#/memories"; return; }
    renderChrome(view ? name : (name === "memory" ? "memories" : "decisions"));
    const box = el("div");
    put(main(), box);
    main().focus({ preventScroll: true });
    try {
      await (view ? view[2](box) : detail(box, arg));
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) box.append(errorBox(err));
    }
  }

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

  async function viewMemories(box) {
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

  // -- one memory: fields, as-of slider, history with diffs, readers ------------------

  const tokens = (text) => String(text || "").split(/(\s+)/).filter((t) => t !== "");

  // Word diff by longest common subsequence; returns [op, text] with op in "=", "+", "-".
  function diff(before, after) {
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

  function diffView(before, after) {
    return el("div", { class: "text diff" }, diff(before, after).map(([op, t]) =>
      (op === "=" ? t : el(op === "+" ? "ins" : "del", { text: t }))));
  }

  const TRACKED = ["namespace", "layer", "status", "subject", "predicate", "value",
    "valid_from", "valid_to", "importance", "confidence", "expires_at", "metadata"];

  function changedFields(prev, next) {
    const rows = [];
    for (const name of TRACKED) {
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

  async function viewMemory(box, id) {
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
      versions.map((v) => el("button", { type: "button", text: `v${v.version} (tx ${v.tx_from})`,
        onclick: () => { slider.value = v.tx_from; readAt(); } })));
    box.append(el("h2", { text: "As of" }), el("div", { class: "slider" },
      el("p", { class: "muted", text: "Move the slider to read this memory as the database " +
        "held it at an earlier transaction (an as_of read on the server)." }),
      slider, el("p", {}, "Reading at ", label), ticks, seen));
    readAt();

    box.append(el("h2", { text: `History (${versions.length} version${versions.length === 1 ? "" : "s"})` }));
    versions.slice().reverse().forEach((v) => {
      const prev = versions.find((p) => p.version === v.version - 1);
      const changes = prev ? changedFields(prev, v) : [];
      box.append(el("div", { class: "card version" },
        el("p", {}, el("strong", { text: `v${v.version}` }), " ", badge(v.status),
          ` by ${v.author} · recorded `, when(v.recorded_at),
          ` · tx ${v.tx_from} → ${v.tx_to ?? "now"} · valid `, when(v.valid_from), " → ",
          when(v.valid_to)),
        prev ? diffView(prev.text, v.text) : el("div", { class: "text", text: v.text }),
        changes.length ? fields(changes) : null));
    });

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

  async function viewTimeline(box) {
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
    const label = el("output", { for: "tl-slider", id: "tl-label" });
    const results = el("div", { id: "tl-results", "aria-live": "polite" });
    let page = 0; let rows = []; let timer = null;

    function show() {
      const shown = rows.slice(page * PAGE, (page + 1) * PAGE);
      put(results, table(["Recorded", "Namespace", "Author", "Text", "Ver.", "Status"],
        shown.map((m) => [when(m.recorded_at), el("code", { text: m.namespace }), m.author,
          el("td", { class: "text" }, memoryLink(m.id, m.text)), `v${m.version}`, m.status]),
        "Nothing readable at this point."),
      rows.length > PAGE ? pager(page, rows.length > (page + 1) * PAGE, (p) => { page = p; show(); }) : null);
    }

    async function load() {
      const at = Number(slider.value);
      label.textContent = `transaction ${at} of ${top.tx}`;
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
            `database as it was at transaction ${at}.`));
          return;
        }
        if (Number(slider.value) !== at) return;
        rows = memories; page = 0; show();
      } catch (err) {
        put(results, errorBox(err));
      }
    }

    slider.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(load, 200); });
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
        el("button", { type: "button", text: "Now", onclick: () => { slider.value = top.tx; load(); } }))),
      results);
    await load();
  }

  // -- conflicts ------------------------------------------------------------------------

  async function viewConflicts(box) {
    const status = el("select", { id: "cf-status" }, ["open", "resolved", "all"].map((s) =>
      el("option", { value: s, text: s })));
    const ns = el("input", { id: "cf-ns", value: "**", size: 20 });
    const list = el("div", { "aria-live": "polite" });
    let page = 0;

    async function memoryCell(ref) {
      try {
        const m = await api("GET", `/v1/memories/${encodeURIComponent(ref.id)}`);
        return el("div", {}, memoryLink(m.id, `v${m.version} by ${m.author}`), " ",
          badge(m.status), el("div", { class: "text", text: m.text }));
      } catch (err) {
        return el("div", { class: "muted", text: `${ref.id} v${ref.version} (not readable by you)` });
      }
    }

    async function resolve(c, winner, reason, out) {
      try {
        const body = { winner };
        if (reason) body.reason = reason;
        await api("POST", `/v1/conflicts/${encodeURIComponent(c.id)}/resolve`, body);
        await load();
      } catch (err) {
        put(out, err.status === 403
          ? empty("Resolving needs admin on this namespace; this key does not have it.")
          : errorBox(err));
      }
    }

    async function card(c) {
      const out = el("div", { "aria-live": "polite" });
      const reason = el("input", { size: 40, placeholder: "why (kept in the log)",
        "aria-label": "Reason" });
      const cells = await Promise.all(c.memories.map(memoryCell));
      const items = c.memories.map((ref, i) => el("li", {}, cells[i],
        c.status === "open" ? el("button", { type: "button", class: "keep",
          onclick: () => resolve(c, ref.id, reason.value.trim(), out),
          text: "Keep this one" }) : null));
      return el("div", { class: "card conflict" },
        el("p", {}, badge(c.kind), badge(c.status, c.status === "open" ? "bad" : "good"),
          el("code", { text: c.namespace }),
          c.subject ? ` · ${c.subject} · ${c.predicate}` : "", ` · tx ${c.tx}`),
        el("p", { class: "text", text: c.reason }),
        fields([["detector", c.detector], ["policy", c.policy], ["outcome", c.outcome],
          ["winner", c.winner ? memoryLink(c.winner) : null],
          ["resolved by", c.resolved_by], ["resolution", c.resolution]]),
        el("ol", {}, items),
        c.status === "open" ? el("div", { class: "row" }, reason,
          el("button", { type: "button", onclick: () => resolve(c, null, reason.value.trim(), out),
            text: "Acknowledge (keep all)" })) : null,
        out);
    }

    async function load() {
      put(list, el("p", { class: "muted", text: "Loading…" }));
      try {
        const r = await api("GET", `/v1/conflicts${query({ status: status.value,
          namespace: ns.value || "**", limit: (page + 1) * PAGE + 1 })}`);
        const shown = r.conflicts.slice(page * PAGE, (page + 1) * PAGE);
        if (!shown.length) {
          put(list, empty(`No ${status.value === "all" ? "" : status.value + " "}conflicts you may read.`));
          return;
        }
        const cards = [];  // one conflict at a time: a page stays well inside the rate limit
        for (const c of shown) cards.push(await card(c));
        put(list, ...cards, r.conflicts.length > PAGE || page > 0
          ? pager(page, r.conflicts.length > (page + 1) * PAGE, (p) => { page = p; load(); }) : "");
      } catch (err) {
        put(list, errorBox(err));
      }
    }

    box.append(el("h1", { text: "Conflict inbox" }),
      el("form", { class: "row", onsubmit: (event) => { event.preventDefault(); page = 0; load(); } },
        el("label", {}, "Status", status), el("label", {}, "Namespace", ns),
        el("button", { class: "primary", type: "submit", text: "Show" })), list);
    await load();
  }

  // -- decisions --------------------------------------------------------------------------

  async function viewDecisions(box) {
    const ns = el("input", { id: "dc-ns", value: "**", size: 20 });
    const id = el("input", { id: "dc-id", size: 40, placeholder: "a decision id" });
    const list = el("div", { "aria-live": "polite" });
    let page = 0; let rows = [];

    function show() {
      const shown = rows.slice(page * PAGE, (page + 1) * PAGE);
      put(list, table(["Decided", "Principal", "Description", "Basis", "Stale since", ""],
        shown.map((d) => [when(d.recorded_at), d.principal, el("td", { class: "text", text: d.description }),
          `${d.basis.length} version${d.basis.length === 1 ? "" : "s"}`, `tx ${d.stale_tx}`,
          el("a", { href: `#/decision/${encodeURIComponent(d.id)}`, text: "Explain" })]),
        "No stale decisions: every decision you may read still rests on current facts."),
      rows.length > PAGE ? pager(page, rows.length > (page + 1) * PAGE, (p) => { page = p; show(); }) : null);
    }

    async function load() {
      try {
        rows = (await api("GET", `/v1/decisions/stale${query({ namespace: ns.value || "**" })}`)).decisions;
        page = 0; show();
      } catch (err) { put(list, errorBox(err)); }
    }

    box.append(el("h1", { text: "Decisions" }),
      el("form", { class: "row", onsubmit: (event) => {
        event.preventDefault();
        if (id.value.trim()) location.hash = `#/decision/${encodeURIComponent(id.value.trim())}`;
      } }, el("label", {}, "Explain a decision", id),
      el("button", { type: "submit", text: "Explain" })),
      el("h2", { text: "Stale decisions (their basis changed since)" }),
      el("form", { class: "row", onsubmit: (event) => { event.preventDefault(); load(); } },
        el("label", {}, "Namespace", ns), el("button", { type: "submit", text: "Show" })), list);
    await load();
  }

  async function viewDecision(box, id) {
    const x = await api("GET", `/v1/decisions/${encodeURIComponent(id)}/explain`);
    const d = x.decision;
    box.append(el("h1", {}, "Decision ", x.stale ? badge("stale", "bad") : badge("basis current", "good")),
      el("div", { class: "card" }, el("p", { class: "text decision-text", text: d.description }),
        fields([["id", el("code", { text: d.id })], ["principal", d.principal],
          ["decided", when(d.recorded_at)], ["transaction", String(d.tx)],
          ["namespace", el("code", { text: d.namespace })],
          ["outcome", json(d.outcome)], ["metadata", json(d.metadata)],
          ["stale since", d.stale_tx ? `tx ${d.stale_tx}` : null],
          ["hidden basis", d.basis_hidden ? `${d.basis_hidden} version(s) you may not read` : null]])),
      el("h2", { text: "Basis: as it was, and what changed since" }));
    if (!x.basis.length) box.append(empty("This decision named no memories as its basis."));
    for (const b of x.basis) {
      if (!b.visible) {
        box.append(el("div", { class: "card muted", text: "A basis memory you may not read." }));
        continue;
      }
      const flags = [b.stale ? badge("changed", "bad") : badge("unchanged", "good"),
        b.superseded ? badge("superseded", "warn") : null, b.retracted ? badge("retracted", "bad") : null,
        b.erased ? badge("erased", "bad") : null, b.contested ? badge("contested", "bad") : null];
      const then = b.then; const now = b.now;
      box.append(el("div", { class: "card basis" },
        el("p", {}, flags, then ? memoryLink(then.id, `memory ${then.id}`) : b.item.id),
        el("div", { class: "two" },
          el("div", {}, el("h2", { text: `Then (v${b.item.version})` }),
            then ? el("div", { class: "text then-text", text: then.text }) : empty("erased")),
          el("div", {}, el("h2", { text: now ? `Now (v${now.version}, ${now.status})` : "Now" }),
            now ? (then && now.version !== then.version ? diffView(then.text, now.text)
              : el("div", { class: "text", text: now.text })) : empty("no current version"))),
        b.later.length ? el("p", { class: "muted",
          text: `${b.later.length} later version(s); the latest by ${b.later[b.later.length - 1].author}.` }) : null,
        b.conflicts.length ? el("p", {}, badge(`${b.conflicts.length} conflict(s)`, "bad"),
          el("a", { href: "#/conflicts", text: "open the inbox" })) : null));
    }
  }

  // -- agents, grants, lifecycle policies (read-only) ------------------------------

  async function viewAccess(box) {
    const me = state.me;
    box.append(el("h1", { text: "Agents, grants and lifecycle" }),
      el("div", { class: "card" }, fields([["signed in as", me.name],
        ["roles", me.roles.join(", ") || "—"], ["trust", String(me.trust)],
        ["admin", me.is_admin ? "yes" : "no"]])));
    if (!me.is_admin) {
      box.append(empty("Listing agents, grants and lifecycle policies needs an admin key; " +
        "the server refuses it for this key. This view is read-only for everyone."));
      return;
    }
    const [agents, grants, names] = await Promise.all([api("GET", "/v1/admin/agents"),
      api("GET", "/v1/admin/grants"), api("GET", "/v1/namespaces")]);
    box.append(el("h2", { text: `Agents (${agents.agents.length})` }),
      table(["Name", "Kind", "Roles", "Trust", "Status", "Created (tx)"],
        agents.agents.map((a) => [a.name, a.kind, a.roles.join(", "), String(a.trust),
          a.status === "active" ? badge("active", "good") : badge(a.status, "warn"), String(a.created_tx)]),
        "No agents yet."),
      el("h2", { text: `Grants (${grants.grants.length})` }),
      table(["Grantee", "Pattern", "Actions", "Granted by", "Since (tx)"],
        grants.grants.map((g) => [g.grantee, el("code", { text: g.pattern }), g.actions.join(", "),
          g.granted_by, String(g.tx_from)]), "No grants: agents can read only their own namespace."));
    const ns = el("input", { id: "lc-ns", list: "lc-names", size: 30, placeholder: "a namespace" });
    const out = el("div", { "aria-live": "polite" });
    box.append(el("h2", { text: "Lifecycle policy in force" }),
      el("datalist", { id: "lc-names" }, names.namespaces.map((n) => el("option", { value: n }))),
      el("form", { class: "row", onsubmit: async (event) => {
        event.preventDefault();
        try {
          const r = await api("GET", `/v1/admin/lifecycle${query({ namespace: ns.value.trim() })}`);
          put(out, r.policy ? el("div", { class: "card" }, fields(Object.entries(r.policy)
            .map(([k, v]) => [k, typeof v === "object" && v !== null ? json(v) : String(v)])))
            : empty("No lifecycle policy applies to this namespace: memories keep until erased."));
        } catch (err) { put(out, errorBox(err)); }
      } }, el("label", {}, "Namespace", ns), el("button", { type: "submit", text: "Show policy" })),
      out);
  }

  // -- verify and checkpoints ---------------------------------------------------------

  async function viewAudit(box) {
    const top = await head();
    box.append(el("h1", { text: "Verify" }),
      el("div", { class: "card" }, fields([["log head", `event ${top.seq}, transaction ${top.tx}`]])));
    if (!state.me.is_admin) {
      box.append(empty("Verifying the log and signing checkpoints need an admin key."));
      return;
    }
    const report = el("div", { id: "verify-report", "aria-live": "polite" });
    const cp = el("div", { id: "checkpoint", "aria-live": "polite" });
    const showCheckpoint = (c) => el("div", { class: "card" }, fields([
      ["signed", when(c.created_at)], ["events covered", String(c.tree_size)],
      ["head", el("code", { text: `${c.head_seq} · ${c.head_hash}` })],
      ["Merkle root", el("code", { text: c.merkle_root })], ["key id", el("code", { text: c.key_id })]]));
    const saved = sessionStorage.getItem(CHECKPOINT);
    put(cp, saved ? showCheckpoint(JSON.parse(saved))
      : empty("No checkpoint signed from this browser tab yet."));
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
            sessionStorage.setItem(CHECKPOINT, JSON.stringify(c));
            put(cp, showCheckpoint(c));
          } catch (err) { put(cp, errorBox(err)); }
        } })),
    el("h2", { text: "Last verify" }), report,
    el("h2", { text: "Last checkpoint" }),
    el("p", { class: "muted", text: "Keep checkpoints outside the database (engram audit " +
      "checkpoint writes them to a file): a later rewrite of the log no longer matches them." }), cp);
    report.append(empty("Not verified from this tab yet."));
  }

  // -- live change feed --------------------------------------------------------------

  function stopFeed() {
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
          if (response.status === 401) { signOut(message); return; }
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

  async function viewFeed(box) {
    const top = await head();
    const ns = el("input", { id: "feed-ns", value: "**", size: 20 });
    const kind = el("input", { id: "feed-kind", size: 16, placeholder: "e.g. memory." });
    const from = el("select", { id: "feed-from" }, el("option", { value: "now", text: "new events" }),
      el("option", { value: "start", text: "the beginning" }));
    const status = el("span", { class: "muted", id: "feed-status", "aria-live": "polite" });
    const body = el("tbody");
    const list = el("table", { id: "feed" }, el("thead", {}, el("tr", {},
      ["Seq", "Time", "Kind", "Namespace", "Actor", "Subject"].map((h) => el("th", { scope: "col", text: h })))), body);
    const none = empty("No events yet: changes you may read appear here as they happen.");
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

  window.addEventListener("hashchange", render);
  document.addEventListener("DOMContentLoaded", render);
})();
