// One body, shown three ways: "pretty" is the server's decoded view
// (/api/flows/ID/view/SIDE: content-encoding undone, JSON pretty-printed,
// forms, XML/HTML, protobuf, images by their body URL), "raw" the bytes as
// UTF-8 text, "hex" a hex dump. Fetched only when shown.

import { api, bodyUrl, fetchBody, flowPath } from "./api.js";
import { fill, fmtSize, h } from "./util.js";

const HEX_LIMIT = 64 * 1024; // bytes dumped; the download link has the rest
const HIGHLIGHT_LIMIT = 256 * 1024; // JSON coloured up to this many characters

/** A body panel for `side` of flow `id`; `info` is the API's {size, stored, truncated}. */
export function bodyPanel(id, side, info) {
  const content = h("div", { class: "body-content" });
  const modes = ["pretty", "raw", "hex"];
  const buttons = modes.map((mode) =>
    h("button", { class: "seg", "data-mode": mode, type: "button", onclick: () => show(mode) }, mode),
  );
  const facts = [];
  if (info) {
    facts.push(fmtSize(info.size));
    if (info.truncated) facts.push(`stored: the first ${fmtSize(info.stored)}`);
  }
  const panel = h(
    "div",
    { class: "body-panel", "data-side": side, "data-testid": `body-${side}` },
    h(
      "div",
      { class: "body-bar" },
      h("span", { class: "segs" }, buttons),
      h("span", { class: "body-facts" }, facts.join(" · ")),
      h("a", { href: bodyUrl(id, side), target: "_blank", rel: "noopener", class: "body-link" }, "open raw"),
    ),
    content,
  );

  async function show(mode) {
    for (const b of buttons) b.classList.toggle("on", b.dataset.mode === mode);
    fill(content, h("div", { class: "loading" }, "loading…"));
    try {
      fill(content, await render(id, side, mode));
    } catch (err) {
      fill(content, h("div", { class: "error-box" }, `could not load the body: ${err.message}`));
    }
  }

  if (info && info.size === 0) fill(content, h("div", { class: "muted" }, "no body"));
  else show("pretty");
  return panel;
}

async function render(id, side, mode) {
  if (mode === "hex") return hexDump(await fetchBody(id, side));
  if (mode === "raw") {
    const bytes = await fetchBody(id, side);
    return h("pre", { class: "body-text view-raw" }, new TextDecoder("utf-8").decode(bytes));
  }
  const view = await api.get(flowPath(id, `/view/${side}`));
  const note = view.truncated ? h("div", { class: "note" }, "only the start of the body was stored") : null;
  if (view.view === "empty") return h("div", { class: "muted" }, "no body");
  if (view.view === "image") {
    return h(
      "div",
      { class: "body-image" },
      h("img", { src: bodyUrl(id, side), alt: view.mime || "image" }),
      note,
    );
  }
  const pre = h("pre", { class: `body-text view-${view.view}`, "data-view": view.view });
  if (view.view === "json" && view.text.length <= HIGHLIGHT_LIMIT) pre.append(...highlightJson(view.text));
  else pre.textContent = view.text;
  return h(
    "div",
    {},
    h("div", { class: "view-kind" }, `${view.view}${view.mime ? ` · ${view.mime}` : ""}`),
    pre,
    note,
  );
}

const JSON_TOKEN = /("(?:[^"\\]|\\.)*")(\s*:)?|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|\b(true|false|null)\b/g;

/** Spans for keys, strings, numbers and literals; the text stays exactly the same. */
function highlightJson(text) {
  const out = [];
  let last = 0;
  for (const m of text.matchAll(JSON_TOKEN)) {
    if (m.index > last) out.push(text.slice(last, m.index));
    if (m[1]) {
      out.push(h("span", { class: m[2] ? "j-key" : "j-str" }, m[1]));
      if (m[2]) out.push(m[2]);
    } else if (m[3]) out.push(h("span", { class: "j-num" }, m[3]));
    else out.push(h("span", { class: "j-lit" }, m[4]));
    last = m.index + m[0].length;
  }
  out.push(text.slice(last));
  return out;
}

/** "00000000  48 65 6c 6c 6f ...  |Hello...|" lines, 16 bytes each. */
export function hexDump(bytes) {
  const lines = [];
  const n = Math.min(bytes.length, HEX_LIMIT);
  for (let off = 0; off < n; off += 16) {
    const row = bytes.subarray(off, Math.min(off + 16, n));
    const hex = Array.from(row, (b) => b.toString(16).padStart(2, "0"));
    while (hex.length < 16) hex.push("  ");
    const ascii = Array.from(row, (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".")).join("");
    lines.push(
      `${off.toString(16).padStart(8, "0")}  ${hex.slice(0, 8).join(" ")}  ${hex.slice(8).join(" ")}  |${ascii}|`,
    );
  }
  if (bytes.length > n) lines.push(`… ${fmtSize(bytes.length - n)} more`);
  if (!bytes.length) lines.push("(empty)");
  return h("pre", { class: "body-text view-hex" }, lines.join("\n"));
}
