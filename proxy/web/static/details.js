// The details pane of one flow: its title and actions, and tabs: Request and
// Response (headers and body; as received and as sent side by side when a
// rule, hook or edit changed the message), Messages (WebSocket, SSE, gRPC),
// Timing, TLS and Rules. Bodies and messages are fetched when their tab opens.

import { api, flowPath } from "./api.js";
import { bodyPanel } from "./bodyview.js";
import { messagesTab, rulesTab, timingsTab, tlsTab } from "./facts.js";
import { $, fill, fmtClock, fmtMs, fmtSize, h } from "./util.js";

const TABS = ["request", "response", "messages", "timing", "tls", "rules"];
const EXPORTS = ["curl", "har", "jsonl", "pcap"];

export class Details {
  /** `pane`: the aside; `actions`: {mark, resend, replay, diffWith, exportFlow, editHeld, close}. */
  constructor(pane, actions) {
    this.pane = pane;
    this.actions = actions;
    this.tab = "request";
    this.flow = null; // {summary, record, bodies}
    this.id = null;
    this.token = 0; // a later show() wins over an earlier one still loading
  }

  close() {
    this.id = null;
    this.flow = null;
    this.pane.hidden = true;
    document.body.classList.remove("with-details");
  }

  /** Shows flow `id`; `summary` (from the list) stands in while it loads or while it is live. */
  async show(id, summary) {
    const mine = ++this.token;
    this.id = id;
    this.pane.hidden = false;
    document.body.classList.add("with-details");
    let flow;
    try {
      flow = await api.get(flowPath(id));
    } catch (err) {
      if (err.status !== 404 || !summary) throw err;
      flow = { summary, record: null, bodies: {}, pending: true };
    }
    if (mine !== this.token) return;
    this.flow = flow;
    this.render();
  }

  /** The list saw a change to the flow shown (e.g. live -> done): reload it. */
  refresh(summary) {
    if (!this.flow || summary.id !== this.id) return;
    const old = this.flow.summary;
    if (old.state !== summary.state || old.marked !== summary.marked || old.held !== summary.held) {
      this.show(summary.id, summary).catch(() => {});
    }
  }

  render() {
    const { summary: s, record } = this.flow;
    const tabs = TABS.filter((t) => t !== "messages" || hasMessages(s));
    if (!tabs.includes(this.tab)) this.tab = "request";
    fill(
      this.pane,
      h(
        "div",
        { class: "dt-head" },
        h(
          "div",
          { class: "dt-title", "data-testid": "details-title" },
          h("span", { class: "method", "data-method": s.method || "" }, s.method || s.kind),
          h("span", { class: "url mono", title: s.url }, s.url || s.host || ""),
          s.status ? h("span", { class: `status-badge st-${String(s.status)[0]}xx` }, s.status) : null,
          h(
            "button",
            {
              class: "icon close",
              id: "details-close",
              title: "close (Esc)",
              onclick: () => this.actions.close(),
            },
            "×",
          ),
        ),
        h("div", { class: "dt-facts" }, facts(s, record)),
        this.actionBar(s),
      ),
      s.held ? this.heldBanner(s) : null,
      this.flow.pending
        ? h("div", { class: "note" }, "In progress: headers and bodies show once the flow is stored.")
        : null,
      s.error ? h("div", { class: "error-box" }, s.error) : null,
      h(
        "nav",
        { class: "tabs", role: "tablist" },
        tabs.map((t) =>
          h(
            "button",
            {
              class: `tab${t === this.tab ? " on" : ""}`,
              role: "tab",
              "data-tab": t,
              "data-testid": `tab-${t}`,
              onclick: () => this.select(t),
            },
            tabLabel(t),
          ),
        ),
      ),
      h("div", { class: "dt-body", id: "details-body", "data-testid": "details-body" }),
    );
    this.renderTab();
  }

  actionBar(s) {
    const a = this.actions;
    return h(
      "div",
      { class: "dt-actions" },
      h(
        "button",
        { id: "act-mark", onclick: () => a.mark(s.id, !s.marked) },
        s.marked ? "★ Unmark" : "☆ Mark",
      ),
      h("button", { id: "act-resend", onclick: () => a.resend(s.id), disabled: !s.method }, "Edit & resend…"),
      h("button", { id: "act-replay", onclick: () => a.replay(s.id), disabled: !s.method }, "Replay"),
      h(
        "button",
        { id: "act-diff", onclick: () => a.diffWith(s.id), title: "then click another flow" },
        "Diff with…",
      ),
      h(
        "span",
        { class: "export-links" },
        "Export:",
        EXPORTS.map((f) =>
          h(
            "button",
            { class: "link", "data-format": f, id: `act-export-${f}`, onclick: () => a.exportFlow(s.id, f) },
            f === "curl" ? "curl" : f.toUpperCase(),
          ),
        ),
      ),
    );
  }

  heldBanner(s) {
    return h(
      "div",
      { class: "held-banner", "data-testid": "held-banner" },
      `Held at the ${s.held}: it waits for you.`,
      h("button", { class: "primary", onclick: () => this.actions.editHeld(s.id) }, "Edit in Intercept"),
    );
  }

  select(tab) {
    this.tab = tab;
    for (const b of this.pane.querySelectorAll(".tab")) b.classList.toggle("on", b.dataset.tab === tab);
    this.renderTab();
  }

  renderTab() {
    const body = $("#details-body", this.pane);
    const { summary: s, record, bodies } = this.flow;
    const id = s.id;
    const views = {
      request: () => messageTab(id, "request", record, bodies),
      response: () => messageTab(id, "response", record, bodies),
      messages: () => messagesTab(id),
      timing: () => timingsTab(record),
      tls: () => tlsTab(record),
      rules: () => rulesTab(s, record),
    };
    fill(body, views[this.tab]());
  }
}

function tabLabel(t) {
  return {
    request: "Request",
    response: "Response",
    messages: "Messages",
    timing: "Timing",
    tls: "TLS",
    rules: "Rules",
  }[t];
}

function hasMessages(s) {
  return ["WebSocket", "SSE", "gRPC"].includes(s.protocol) || s.kind === "websocket";
}

function facts(s, record) {
  const items = [
    s.protocol,
    s.state,
    fmtClock(s.start),
    s.duration !== null ? fmtMs(s.duration) : null,
    s.size !== null ? fmtSize(s.size) : null,
  ];
  if (record && record.client) items.push(`client ${record.client.ip}:${record.client.port}`);
  if (record && record.server) items.push(`server ${record.server.ip}:${record.server.port}`);
  if (s.rules && s.rules.length) items.push(`rules: ${s.rules.join(", ")}`);
  return items.filter(Boolean).join(" · ");
}

/** The request or response: one column, or two (as received | as sent) when changed. */
function messageTab(id, which, record, bodies) {
  const msg = record && record[which];
  if (!msg)
    return h("div", { class: "muted" }, which === "response" ? "No response (yet)." : "No request recorded.");
  const changed = which === "request" ? msg.forwarded : msg.upstream;
  if (!changed) return column(id, which, msg, which, bodies[which], null);
  // The changed side's body, or the same body when only the head changed.
  const changedSide = which === "request" ? "request_sent" : "response_upstream";
  const changedBody = bodies[changedSide] ? changedSide : which;
  const [first, firstSide, second, secondSide] =
    which === "request" ? [msg, which, changed, changedBody] : [changed, changedBody, msg, which];
  const titles =
    which === "request"
      ? ["As received from the client", "As sent to the server"]
      : ["As received from the server", "As sent to the client"];
  return h(
    "div",
    { class: "side-by-side", "data-testid": `${which}-changed` },
    h(
      "section",
      {},
      h("h4", { class: "side-title" }, titles[0]),
      column(id, which, first, firstSide, bodies[firstSide], second),
    ),
    h(
      "section",
      {},
      h("h4", { class: "side-title" }, titles[1]),
      column(id, which, second, secondSide, bodies[secondSide], first),
    ),
  );
}

function startLine(which, m) {
  if (which === "request") return `${m.method} ${m.url} ${m.http_version || ""}`;
  return `${m.http_version || ""} ${m.status ?? ""} ${m.reason || ""}`;
}

/** One message: its start line, headers (those not in `other` highlighted) and body. */
function column(id, which, m, side, bodyInfo, other) {
  const theirs = new Set(((other && other.headers) || []).map(([k, v]) => `${k.toLowerCase()}\n${v}`));
  const rows = (m.headers || []).map(([k, v]) =>
    h(
      "tr",
      { class: other && !theirs.has(`${k.toLowerCase()}\n${v}`) ? "hdr-diff" : "" },
      h("th", {}, k),
      h("td", {}, v),
    ),
  );
  const trailers = (m.trailers || []).map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v)));
  const hasBody = bodyInfo || (m.body_size ?? 0) > 0;
  return h(
    "div",
    { class: "message", "data-testid": `message-${side}` },
    h("div", { class: "start-line mono" }, startLine(which, m)),
    h("table", { class: "headers mono", "data-testid": `headers-${side}` }, rows),
    trailers.length ? [h("h4", {}, "Trailers"), h("table", { class: "headers mono" }, trailers)] : null,
    hasBody
      ? bodyPanel(id, side, bodyInfo || { size: m.body_size, stored: 0, truncated: false })
      : h("div", { class: "muted" }, "no body"),
  );
}
