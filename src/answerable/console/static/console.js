// The answerable console: one page, views by hash route, everything from /console/api.
// No inline script (the Content-Security-Policy forbids it) and no HTML built from data:
// every value reaches the page as text through el(), so a tool's arguments cannot inject markup.
"use strict";

const API = "/console/api";
let me = null;
let live = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function say(text, isError) {
  const message = document.getElementById("message");
  message.textContent = text || "";
  message.className = isError ? "error" : "muted";
}

async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    if (me) headers["X-CSRF-Token"] = me.csrf_token;
  }
  const response = await fetch(API + path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const type = response.headers.get("Content-Type") || "";
  const doc = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    const error = new Error(typeof doc === "object" && doc.error ? doc.error : `${response.status}`);
    error.status = response.status;
    error.code = typeof doc === "object" ? doc.reason_code : "";
    if (response.status === 401) showLogin(error.message);
    throw error;
  }
  return doc;
}

function pretty(value) {
  return el("pre", { text: JSON.stringify(value, null, 2) });
}

function can(role) {
  return me && me.roles.includes(role);
}

// --- log in and out ----------------------------------------------------------------------------

function showLogin(why) {
  me = null;
  if (live) { live.close(); live = null; }
  document.getElementById("bar").hidden = true;
  document.getElementById("view").hidden = true;
  document.getElementById("login").hidden = false;
  say(why || "", Boolean(why));
}

async function logIn(event) {
  event.preventDefault();
  try {
    me = await call("POST", "/login", {
      identity: document.getElementById("login-identity").value,
      password: document.getElementById("login-password").value,
    });
    document.getElementById("login-password").value = "";
    start();
  } catch (error) {
    say(error.message, true);
  }
}

async function logOut() {
  try { await call("POST", "/logout", {}); } catch (error) { /* the session is gone either way */ }
  showLogin("Logged out.");
}

function start() {
  document.getElementById("login").hidden = true;
  document.getElementById("bar").hidden = false;
  document.getElementById("view").hidden = false;
  document.getElementById("who").textContent = `${me.identity} (${me.roles.join(", ")})`;
  say("");
  route();
}

// --- halt: always in the bar ----------------------------------------------------------------------

function askHalt() {
  document.getElementById("halt-reason").value = "";
  document.getElementById("halt-dialog").showModal();
}

async function halt(event) {
  event.preventDefault();
  const reason = document.getElementById("halt-reason").value;
  document.getElementById("halt-dialog").close();
  try {
    const done = await call("POST", "/control", { action: "halt", scope: "system", reason });
    say(`Halted (${done.id || "recorded"}).`);
    route();
  } catch (error) {
    say(`Halt refused: ${error.message}`, true);
  }
}

// --- views -------------------------------------------------------------------------------------

const views = {
  async reviews(view) {
    const reviews = await call("GET", "/reviews");
    view.append(el("h1", { text: "Reviews waiting for a person" }));
    if (!reviews.length) view.append(el("p", { class: "muted", text: "No open reviews." }));
    for (const review of reviews) view.append(reviewCard(review));
  },

  async review(view, id) {
    view.append(reviewCard(await call("GET", `/reviews/${encodeURIComponent(id)}`)));
  },

  async live(view) {
    view.append(el("h1", { text: "Live system" }));
    const board = el("div", { class: "grid", id: "live-board" }, el("p", { class: "muted", text: "connecting…" }));
    view.append(board);
    live = new EventSource(`${API}/live`);
    live.addEventListener("state", (event) => renderLive(board, JSON.parse(event.data)));
    live.onerror = () => say("The live view lost its connection; it reconnects by itself.", true);
  },

  async control(view) {
    const state = await call("GET", "/control");
    view.append(el("h1", { text: "Pause and resume" }), el("h3", { text: "In force now" }), pretty(state));
    const scope = el("input", { id: "pause-scope", value: "system", placeholder: "system, agent:NAME, operation:NAME, resource_class:NAME" });
    const reason = el("textarea", { id: "pause-reason" });
    const act = (action) => async () => {
      try {
        const path = action === "resume" ? "/resume" : "/control";
        // A resume lifts the stops this page showed, and is refused if others came since.
        const body = action === "resume"
          ? { scope: scope.value, reason: reason.value, seen: state.stops.map((stop) => stop.id) }
          : { action, scope: scope.value, reason: reason.value };
        await call("POST", path, body);
        say(`${action} of ${scope.value} recorded.`);
        route();
      } catch (error) {
        say(`${action} refused: ${error.message}`, true);
      }
    };
    view.append(el("div", { class: "card" },
      el("label", {}, "Scope ", scope),
      el("label", {}, "Reason ", reason),
      el("button", { type: "button", id: "pause", onclick: act("pause") }, "Pause"), " ",
      el("button", { type: "button", id: "resume", onclick: act("resume") }, "Resume")));
  },

  async ledger(view) {
    const params = new URLSearchParams(location.hash.split("?")[1] || "");
    const form = el("form", { id: "ledger-filter" });
    for (const name of ["kind", "agent", "operation"]) {
      form.append(el("label", {}, `${name} `, el("input", { name, value: params.get(name) || "" })));
    }
    form.append(el("button", { type: "submit" }, "Show"));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const query = new URLSearchParams();
      for (const [key, value] of new FormData(form)) if (value) query.set(key, value);
      location.hash = `#/ledger?${query}`;
    });
    const found = await call("GET", `/entries?${params}`);
    const rows = found.entries.map((e) => el("tr", {},
      el("td", { text: e.index }),
      el("td", {}, el("a", { href: `#/entry/${encodeURIComponent(e.id)}`, text: e.kind })),
      el("td", { text: e.at || "" }), el("td", { text: e.agent || "" }),
      el("td", { text: e.operation || "" }), el("td", { text: e.summary || "" })));
    view.append(el("h1", { text: "Ledger" }), form,
      el("table", { id: "entries" },
        el("tr", {}, ...["#", "kind", "at", "agent", "operation", "summary"].map((h) => el("th", { text: h }))),
        ...rows));
  },

  async entry(view, id) {
    const doc = await call("GET", `/entries/${encodeURIComponent(id)}`);
    view.append(el("h1", { text: `${doc.kind} #${doc.index}` }),
      el("p", {}, el("a", { href: `#/why/${encodeURIComponent(doc.id)}`, text: "Why is this here? (graph)" })),
      el("h3", { text: "Entry" }), pretty(doc.entry),
      el("h3", { text: "Inclusion proof" }), pretty(doc.proof),
      el("h3", { text: "Signed checkpoint" }), el("pre", { text: doc.checkpoint || "(none signed yet)" }));
  },

  async why(view, id) {
    const graph = await call("GET", `/why/${encodeURIComponent(id)}`);
    view.append(el("h1", { text: `Why ${id}` }), el("p", { class: "muted", text: `${graph.nodes.length} entries` }));
    const box = el("div", { class: "graph", id: "why-graph" });
    view.append(box);
    draw(box, graph.nodes.map((n) => ({ id: n.id, label: n.label || n.kind })),
      graph.edges.map((e) => ({ source: e.from, target: e.to })), graph.layout);
  },

  async rules(view) {
    const rules = await call("GET", "/rules");
    view.append(el("h1", { text: "Rules" }), el("h3", { text: "In force" }), pretty(rules.active),
      el("h3", { text: "History (who signed each)" }),
      el("table", { id: "rules-history" },
        el("tr", {}, ...["version", "signed by", "at", "ruleset hash"].map((h) => el("th", { text: h }))),
        ...rules.history.map((r) => el("tr", {}, el("td", { text: r.version }), el("td", { text: r.approved_by }),
          el("td", { text: r.at }), el("td", { text: r.ruleset_hash })))));
    if (rules.history.length > 1) {
      const versions = rules.history.map((r) => r.version);
      const from = el("select", { id: "diff-from" }, ...versions.map((v) => el("option", { value: v, text: v })));
      const to = el("select", { id: "diff-to" }, ...versions.map((v) => el("option", { value: v, text: v })));
      to.value = String(versions[versions.length - 1]);
      const out = el("div");
      const show = async () => {
        out.replaceChildren(pretty(await call("GET", `/rules/diff?from=${from.value}&to=${to.value}`)));
      };
      view.append(el("h3", { text: "Diff" }), from, to, el("button", { type: "button", onclick: show }, "Show diff"), out);
    }
  },

  async coordination(view) {
    const params = new URLSearchParams(location.hash.split("?")[1] || "");
    const graph = await call("GET", `/coordination?${params}`);
    const days = el("nav", { id: "days" }, el("a", { href: "#/coordination", text: "all days" }),
      ...(graph.days || []).map((day, i) => [" · ", el("a", { href: `#/coordination?day=${i}`, text: day })]));
    view.append(el("h1", { text: `Coordination: who told whom${graph.day ? ` on ${graph.day}` : ""}` }), days,
      el("p", { class: "muted", text: "Grey: declared channels; amber: used but undeclared; red dashed: refused." }));
    const box = el("div", { class: "graph", id: "coordination-graph" });
    view.append(box);
    const nodes = new Map((graph.agents || []).map((a) => [a, { id: a, label: a }]));
    const edges = [];
    const add = (from, to, label, mark) => {
      for (const name of [from, to]) if (!nodes.has(name)) nodes.set(name, { id: name, label: name });
      edges.push({ source: from, target: to, label, mark });
    };
    for (const edge of graph.edges || []) {
      const targets = edge.to && edge.to.length ? edge.to : [`topic ${edge.topic}`];
      const mark = edge.refused ? "refused" : edge.undeclared ? "undeclared" : "ok";
      for (const to of targets) add(edge.from, to, `${edge.type} ×${edge.messages}`, mark);
    }
    for (const edge of graph.refused_edges || []) {
      add(edge.from, `topic ${edge.topic}`, `${edge.type} refused ×${edge.refused}`, "refused");
    }
    draw(box, [...nodes.values()], edges, null);
  },

  async reports(view) {
    view.append(el("h1", { text: "Reports" }),
      el("p", {}, el("a", { href: `${API}/report`, target: "_blank", rel: "noopener", id: "report-link",
        text: "Incident report of this ledger" })),
      el("p", {}, el("a", { href: `${API}/report/compare`, target: "_blank", rel: "noopener", id: "compare-link",
        text: "Comparison with the other runs the config names" })));
  },
};

function reviewCard(review) {
  const card = el("div", { class: "card review", "data-review": review.review_id });
  card.append(el("h3", { text: `${review.operation} — ${review.status}` }),
    el("p", {}, "Rule: ", el("strong", { text: (review.policy_ids || []).join(", ") }), ` — ${review.reason || ""}`),
    el("p", { class: "muted", text: `Deadline ${review.deadline || "none"}; escalates to ${review.escalates_to || "nobody"}` }),
    el("p", {}, el("a", { href: `#/why/${encodeURIComponent(review.intent_id)}`, text: "Why was this proposed?" })),
    el("h4", { text: "Arguments" }), pretty(review.arguments));
  if (review.can_answer) {
    const reason = el("textarea", { class: "answer-reason", placeholder: "Why (recorded, signed)" });
    const answer = (verdict) => async () => {
      try {
        await call("POST", `/reviews/${encodeURIComponent(review.review_id)}/answer`, { verdict, reason: reason.value });
        say(`${verdict} recorded for ${review.review_id}.`);
        route();
      } catch (error) {
        say(`${verdict} refused: ${error.message}`, true);
      }
    };
    card.append(el("label", {}, "Reason ", reason),
      el("button", { type: "button", class: "approve", onclick: answer("approve") }, "Approve"), " ",
      el("button", { type: "button", class: "deny", onclick: answer("deny") }, "Deny"));
  } else {
    card.append(el("p", { class: "muted", text: review.status === "open" ? "You cannot answer this review." : `This review is ${review.status}.` }));
  }
  return card;
}

function renderLive(board, state) {
  const stops = (state.control || {}).stops || [];
  const halted = stops.some((stop) => stop.action === "halt");
  const lines = (items, empty) => (items.length ? items : [el("p", { class: "muted", text: empty })]);
  board.replaceChildren(
    el("div", { class: "card" }, el("h3", { text: "Ledger" }), el("p", { id: "live-size", text: `${state.ledger_size} entries` }),
      el("p", { id: "live-intents", "data-n": state.intents, text: `${state.intents} intents proposed` }),
      el("p", { text: `${state.reviews_open} reviews open` })),
    el("div", { class: "card" }, el("h3", { text: "Control" }),
      el("p", { class: halted ? "state-halted" : "", id: "live-control", text: halted ? "HALTED" : stops.length ? "paused in part" : "running" }),
      ...lines(stops.map((stop) => el("p", { text: `${stop.action} of ${stop.scope} by ${stop.by} at ${stop.at}: ${stop.reason}` })), "No stops in force.")),
    el("div", { class: "card" }, el("h3", { text: "Agents (messages, last minute)" }),
      ...lines((state.agents || []).map((a) => el("p", { text: `${a.name}: ${a.messages_last_minute}` })), "No agents.")),
    el("div", { class: "card", id: "live-executed",
      "data-n": Object.values(state.executed || {}).reduce((sum, n) => sum + n, 0) }, el("h3", { text: "Executed per class" }),
      ...lines(Object.entries(state.executed || {}).map(([cls, n]) => el("p", { text: `${cls}: ${n}` })), "Nothing executed yet.")),
    el("div", { class: "card" }, el("h3", { text: "Open alerts" }),
      ...lines((state.alerts || []).map((a) => el("p", { text: `${a.monitor || a.name || "alert"}: ${a.invariant || a.summary || JSON.stringify(a)}` })), "No open alerts.")));
}

function draw(box, nodes, edges, layout) {
  if (typeof cytoscape !== "function") {
    box.append(el("p", { class: "error", text: "The graph library did not load." }));
    return;
  }
  const elements = [
    ...nodes.map((n) => ({ data: { id: n.id, label: n.label }, position: layout && layout[n.id] ? layout[n.id] : undefined })),
    ...edges.map((e, i) => ({ data: { id: `e${i}`, source: e.source, target: e.target, label: e.label || "", mark: e.mark || "ok" } })),
  ];
  const graph = cytoscape({
    container: box,
    elements,
    layout: layout ? { name: "preset" } : { name: "breadthfirst", directed: true, spacingFactor: 1.1 },
    style: [
      { selector: "node", style: { label: "data(label)", "text-wrap": "wrap", "font-size": 9, "background-color": "#0969da", color: "#1b1f24", "text-valign": "bottom" } },
      { selector: "edge", style: { width: 1.5, "curve-style": "bezier", "target-arrow-shape": "triangle", label: "data(label)", "font-size": 8 } },
      { selector: 'edge[mark = "refused"]', style: { "line-color": "#c0162b", "target-arrow-color": "#c0162b", "line-style": "dashed" } },
      { selector: 'edge[mark = "undeclared"]', style: { "line-color": "#9a6700", "target-arrow-color": "#9a6700" } },
    ],
  });
  box.dataset.nodes = String(graph.nodes().length);
}

async function route() {
  if (!me) return;
  if (live) { live.close(); live = null; }
  const [path] = location.hash.replace(/^#\/?/, "").split("?");
  const [name, ...rest] = path.split("/");
  const view = document.getElementById("view");
  view.replaceChildren();
  for (const link of document.querySelectorAll("header nav a")) {
    link.classList.toggle("active", link.getAttribute("href").slice(2).split("?")[0] === (name || "reviews"));
  }
  const show = views[name || "reviews"];
  try {
    if (!show) throw new Error(`No page ${name}`);
    await show(view, decodeURIComponent(rest.join("/")));
  } catch (error) {
    if (error.status !== 401) view.append(el("p", { class: "error", text: error.message }));
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  document.getElementById("login-form").addEventListener("submit", logIn);
  document.getElementById("logout").addEventListener("click", logOut);
  document.getElementById("halt").addEventListener("click", askHalt);
  document.getElementById("halt-form").addEventListener("submit", halt);
  document.getElementById("halt-cancel").addEventListener("click", () => document.getElementById("halt-dialog").close());
  window.addEventListener("hashchange", route);
  try {
    me = await call("GET", "/me");
    start();
  } catch (error) {
    showLogin("");
  }
});
