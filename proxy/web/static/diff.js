// Diff two flows: /api/diff gives unified diffs of each part (request line,
// headers, body; response status, headers, body; JSON compared
// pretty-printed); shown here with added lines green, removed lines red.

import { api, query } from "./api.js";
import { fill, h } from "./util.js";

const PARTS = [
  ["request", "line", "Request line"],
  ["request", "headers", "Request headers"],
  ["request", "body", "Request body"],
  ["response", "status", "Response status"],
  ["response", "headers", "Response headers"],
  ["response", "body", "Response body"],
];

export class Diff {
  constructor(dialog) {
    this.dialog = dialog;
  }

  /** Shows the diff of flows `a` and `b` (their summaries, for the titles). */
  async show(a, b) {
    const diff = await api.get(`/api/diff${query({ a: a.id, b: b.id })}`);
    const sections = PARTS.map(([side, part, title]) => {
      const text = (diff[side] && diff[side][part]) || "";
      return h(
        "section",
        { class: "diff-part", "data-part": `${side}-${part}`, "data-testid": `diff-${side}-${part}` },
        h("h4", {}, title, text ? null : h("span", { class: "same" }, " identical")),
        text ? colour(text) : null,
      );
    });
    fill(
      this.dialog,
      h(
        "div",
        { class: "dialog-form diff-view", id: "diff-content", "data-testid": "diff-content" },
        h(
          "div",
          { class: "dialog-head" },
          h("h3", {}, "Diff"),
          h(
            "button",
            { type: "button", class: "icon close", id: "diff-close", onclick: () => this.dialog.close() },
            "×",
          ),
        ),
        h(
          "div",
          { class: "diff-legend" },
          h("div", { class: "d-del" }, `− #${a.seq} ${a.method || ""} ${a.url || ""}`),
          h("div", { class: "d-add" }, `+ #${b.seq} ${b.method || ""} ${b.url || ""}`),
        ),
        sections,
      ),
    );
    if (!this.dialog.open) this.dialog.showModal();
  }
}

/** A unified diff as lines: +/- coloured, @@ hunks and ---/+++ headers dimmed. */
function colour(text) {
  const lines = text.replace(/\n$/, "").split("\n");
  return h(
    "pre",
    { class: "diff mono" },
    lines.map((line) => {
      let cls = "d-ctx";
      if (line.startsWith("+++") || line.startsWith("---")) cls = "d-file";
      else if (line.startsWith("@@")) cls = "d-hunk";
      else if (line.startsWith("+")) cls = "d-add";
      else if (line.startsWith("-")) cls = "d-del";
      return h("div", { class: cls }, line || " ");
    }),
  );
}
