// Exports: one flow as a curl command line (shown, with a Copy button) or a
// HAR/JSONL/PCAP download; a selection or the filtered view as one download
// (POST /api/export).

import { api, download, flowPath, query } from "./api.js";
import { fill, h, toast } from "./util.js";

const EXT = { har: "har", jsonl: "jsonl", pcap: "pcapng" };

export class Exporter {
  /** `dialog`: where a curl command is shown. */
  constructor(dialog) {
    this.dialog = dialog;
  }

  async flow(id, format) {
    try {
      if (format === "curl") return await this.curl(id);
      await download(flowPath(id, `/export${query({ format })}`), null, `flow-${id}.${EXT[format]}`);
    } catch (err) {
      toast(`export failed: ${err.message}`, "error");
    }
  }

  async curl(id) {
    const text = await api.get(flowPath(id, `/export${query({ format: "curl" })}`));
    const pre = h("pre", { class: "body-text curl", id: "curl-text", "data-testid": "curl-text" }, text);
    const copy = h(
      "button",
      {
        class: "primary",
        onclick: async () => {
          try {
            await navigator.clipboard.writeText(text);
            copy.textContent = "Copied";
          } catch {
            getSelection().selectAllChildren(pre); // clipboard refused (plain http): select it instead
          }
        },
      },
      "Copy",
    );
    fill(
      this.dialog,
      h(
        "div",
        { class: "dialog-form" },
        h(
          "div",
          { class: "dialog-head" },
          h("h3", {}, "As a curl command"),
          h("button", { class: "icon close", onclick: () => this.dialog.close() }, "×"),
        ),
        pre,
        h("div", { class: "dialog-actions" }, copy),
      ),
    );
    this.dialog.showModal();
  }

  /** `what`: {ids: [...]} or {filter: EXPR}. */
  async many(format, what) {
    if (what.ids && !what.ids.length) return toast("select flows first (Ctrl/⌘-click, Shift-click)");
    try {
      await download("/api/export", { format, ...what }, `flows.${EXT[format]}`);
    } catch (err) {
      toast(`export failed: ${err.message}`, "error");
    }
  }
}
