// EngramDB inspector: sign-in and navigation. ES modules from this server only; no
// build step, no third-party code (see core.js for how data reaches the page).

import {
  ApiError, KEY, api, badge, el, errorBox, main,
  put, state,
} from "./core.js";

import { viewMemories, viewMemory, viewTimeline } from "./memories.js";
import { stopFeed, viewAccess, viewAudit, viewFeed } from "./operations.js";
import { viewConflicts, viewDecision, viewDecisions } from "./review.js";

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

state.unauthorized = signOut;
window.addEventListener("hashchange", render);
render();
