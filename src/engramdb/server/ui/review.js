// Review: the conflict inbox with resolve, stale decisions and a decision's explanation.

import {
  PAGE, api, badge, diffView, el, empty,
  errorBox, fields, json, memoryLink, pagedTable, pager,
  put, query, when,
} from "./core.js";

// -- conflicts ------------------------------------------------------------------------

export async function viewConflicts(box) {
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

export async function viewDecisions(box) {
  const ns = el("input", { id: "dc-ns", value: "**", size: 20 });
  const id = el("input", { id: "dc-id", size: 40, placeholder: "a decision id" });
  const list = el("div", { "aria-live": "polite" });

  const show = (rows) => put(list, pagedTable(
    ["Decided", "Principal", "Description", "Basis", "Stale since", ""],
    rows.map((d) => [when(d.recorded_at), d.principal, el("td", { class: "text", text: d.description }),
      `${d.basis.length} version${d.basis.length === 1 ? "" : "s"}`, `tx ${d.stale_tx}`,
      el("a", { href: `#/decision/${encodeURIComponent(d.id)}`, text: "Explain" })]),
    "No stale decisions: every decision you may read still rests on current facts."));

  async function load() {
    try {
      show((await api("GET", `/v1/decisions/stale${query({ namespace: ns.value || "**" })}`)).decisions);
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

export async function viewDecision(box, id) {
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
