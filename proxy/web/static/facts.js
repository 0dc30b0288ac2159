// The details' fact tabs, from the flow-log record (docs/flow-log.md):
// timings as a waterfall, TLS facts of each side, the rules that fired, and
// the messages of a WebSocket, SSE or gRPC flow (/api/flows/ID/messages).

import { api, flowPath } from "./api.js";
import { fill, fmtClock, fmtMs, fmtSize, h } from "./util.js";

/** Phases between the record's marks (ms from the flow's start). */
const PHASES = [
  ["request head", null, "request_head"],
  ["upstream ready", "request_head", "connected"],
  ["request sent", "connected", "request_done"],
  ["waiting", "request_done", "response_head"],
  ["response body", "response_head", "response_done"],
];

export function timingsTab(record) {
  const marks = (record && record.timings_ms) || {};
  const total =
    (record && record.duration_ms) || Math.max(0, ...Object.values(marks).filter(Number.isFinite));
  if (!Object.keys(marks).length) return h("div", { class: "muted" }, "No timings recorded for this flow.");
  const rows = [];
  for (const [label, from, to] of PHASES) {
    const end = marks[to];
    if (end === null || end === undefined) continue;
    const start = from ? Math.min(marks[from] ?? 0, end) : 0;
    const left = total ? (start / total) * 100 : 0;
    const width = total ? Math.max(0.5, ((end - start) / total) * 100) : 0;
    rows.push(
      h(
        "tr",
        {},
        h("td", { class: "wf-label" }, label),
        h(
          "td",
          { class: "wf-track" },
          h("div", { class: `wf-bar wf-${to}`, style: `left:${left}%;width:${width}%` }),
        ),
        h("td", { class: "wf-ms" }, fmtMs(end - start)),
      ),
    );
  }
  const markRows = Object.entries(marks).map(([k, v]) =>
    h("tr", {}, h("td", {}, k), h("td", { class: "mono" }, v === null ? "—" : fmtMs(v))),
  );
  return h(
    "div",
    { class: "timings", "data-testid": "timings" },
    h("table", { class: "waterfall" }, rows),
    h("div", { class: "total" }, `total ${fmtMs(total)}`),
    h("h4", {}, "Marks (ms from the start)"),
    h("table", { class: "kv" }, markRows),
  );
}

function kvTable(obj) {
  const rows = [];
  for (const [k, v] of Object.entries(obj || {})) {
    if (v === null || v === undefined) continue;
    const text = typeof v === "object" ? (Array.isArray(v) ? v.join(", ") : null) : String(v);
    rows.push(h("tr", {}, h("th", {}, k), h("td", { class: "mono" }, text ?? kvTable(v))));
  }
  return h("table", { class: "kv" }, rows);
}

export function tlsTab(record) {
  const tls = record && record.tls;
  if (!tls) return h("div", { class: "muted" }, "No TLS on this flow (plain HTTP or TCP).");
  const sides = [];
  if (tls.client) sides.push(h("section", {}, h("h4", {}, "Client ⇄ proxy"), kvTable(tls.client)));
  if (tls.server) sides.push(h("section", {}, h("h4", {}, "Proxy ⇄ server"), kvTable(tls.server)));
  return h(
    "div",
    { class: "tls", "data-testid": "tls" },
    h(
      "p",
      {},
      tls.intercepted ? "Intercepted: the proxy decrypted this flow." : "Not intercepted (relayed).",
    ),
    tls.keylog ? h("p", {}, "Its TLS secrets were written to the key log.") : null,
    h("div", { class: "columns" }, sides),
  );
}

export function rulesTab(summary, record) {
  const rules = (record && record.rules) || {};
  const matched = rules.matched || [];
  const parts = [];
  if (matched.length) {
    parts.push(
      h(
        "table",
        { class: "grid" },
        h("tr", {}, h("th", {}, "rule"), h("th", {}, "source"), h("th", {}, "actions")),
        matched.map((m) =>
          h(
            "tr",
            {},
            h("td", {}, m.rule),
            h("td", { class: "mono" }, m.source || ""),
            h(
              "td",
              { class: "mono" },
              (m.actions || []).map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(", "),
            ),
          ),
        ),
      ),
    );
  } else if (summary.rules && summary.rules.length) {
    parts.push(h("p", {}, `Rules: ${summary.rules.join(", ")}`));
  }
  for (const [title, list] of [
    ["Warnings", rules.warnings],
    ["Tags", rules.tags],
  ]) {
    if (list && list.length)
      parts.push(
        h("h4", {}, title),
        h(
          "ul",
          {},
          list.map((w) => h("li", {}, String(w))),
        ),
      );
  }
  if (rules.detail)
    parts.push(
      h("h4", {}, "Detail"),
      h("pre", { class: "body-text" }, JSON.stringify(rules.detail, null, 2)),
    );
  for (const key of ["grpc", "websocket"]) {
    const sub = record && record[key] && record[key].rules;
    if (sub)
      parts.push(h("h4", {}, `${key} rules`), h("pre", { class: "body-text" }, JSON.stringify(sub, null, 2)));
  }
  if (summary.changed)
    parts.push(
      h(
        "p",
        { class: "note" },
        "A rule, hook or edit changed this flow: see both versions in the Request and Response tabs.",
      ),
    );
  if (!parts.length) return h("div", { class: "muted" }, "No rule or hook matched this flow.");
  return h("div", { class: "rules", "data-testid": "rules" }, parts);
}

export function messagesTab(id) {
  const box = h(
    "div",
    { class: "messages", "data-testid": "messages" },
    h("div", { class: "loading" }, "loading…"),
  );
  api
    .get(flowPath(id, "/messages"))
    .then(({ messages }) => {
      if (!messages.length) return fill(box, h("div", { class: "muted" }, "No messages."));
      fill(
        box,
        h("div", { class: "msg-count" }, `${messages.length} messages`),
        h(
          "table",
          { class: "grid msg-table" },
          h(
            "tr",
            {},
            h("th", {}, ""),
            h("th", {}, "type"),
            h("th", {}, "size"),
            h("th", {}, "time"),
            h("th", {}, "data"),
          ),
          messages.map((m) =>
            h(
              "tr",
              { class: `msg-${m.direction}` },
              h(
                "td",
                { class: "dir", title: m.direction === "client" ? "client → server" : "server → client" },
                m.direction === "client" ? "→" : "←",
              ),
              h("td", {}, m.type || ""),
              h("td", {}, fmtSize(m.size)),
              h("td", { class: "mono" }, typeof m.time === "number" ? fmtClock(m.time) : m.time || ""),
              h("td", { class: "mono msg-text" }, m.text ?? (m.base64 ? `base64: ${m.base64}` : "")),
            ),
          ),
        ),
      );
    })
    .catch((err) => fill(box, h("div", { class: "error-box" }, err.message)));
  return box;
}
