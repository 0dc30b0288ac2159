// The filter box: the expression (docs/filters.md) is applied when typing
// pauses; the server evaluates it (one implementation for the UI, the API and
// the CLI), so an error comes back as the API's 400 with a column, shown
// under the box with a caret at that column (1-based, as the API gives it).

import { debounce, fill, h, toast } from "./util.js";

export const FILTER_HELP = [
  ["~u regex", "URL"],
  ["~d domain", "host"],
  ["~m method", "method"],
  ["~c code", "status code"],
  ["~h / ~hq / ~hs regex", "header (either / request / response)"],
  ["~b / ~bq / ~bs regex", "body"],
  ["~t regex", "content type"],
  ["~websocket ~grpc ~tcp", "protocol"],
  ["~e", "error"],
  ["~marked", "marked flows"],
  ["& | ! ( )", "and, or, not, grouping"],
];

/** Shows an API error under an input: the message, and a caret at its column. */
export function showError(box, input, err) {
  if (!err) {
    box.hidden = true;
    input.classList.remove("invalid");
    fill(box);
    return;
  }
  input.classList.add("invalid");
  box.hidden = false;
  const parts = [h("div", { class: "err-msg", "data-testid": "error-message" }, err.message)];
  if (err.column !== null && err.column !== undefined) {
    const col = Number(err.column);
    const caret = `${input.value}\n${" ".repeat(Math.max(0, col - 1))}^`;
    parts.push(
      h(
        "pre",
        { class: "err-caret", "data-testid": "error-column", "data-column": col, title: `column ${col}` },
        caret,
      ),
    );
  }
  fill(box, ...parts);
}

export class FilterBox {
  /** `apply(expr)` resolves when the list is loaded, or throws an ApiError. */
  constructor({ input, error, help, apply }) {
    this.input = input;
    this.error = error;
    this.apply = apply;
    this.value = "";
    const run = debounce(() => this.run(), 300);
    input.addEventListener("input", run);
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") this.run();
      if (e.key === "Escape") {
        input.value = "";
        this.run();
      }
    });
    if (help) this.buildHelp(help);
  }

  buildHelp(help) {
    fill(
      help,
      h("div", { class: "help-title" }, "Filter expressions"),
      h(
        "table",
        {},
        FILTER_HELP.map(([expr, what]) => h("tr", {}, h("td", {}, h("code", {}, expr)), h("td", {}, what))),
      ),
      h("div", { class: "help-eg" }, "e.g. ", h("code", {}, "~d api.example & !~c 200")),
    );
  }

  async run() {
    const expr = this.input.value.trim();
    if (expr === this.value && !this.input.classList.contains("invalid")) return;
    try {
      await this.apply(expr);
      this.value = expr;
      showError(this.error, this.input, null);
      this.input.classList.toggle("active", expr !== "");
    } catch (err) {
      if (err.status === 400) showError(this.error, this.input, err);
      else toast(`could not filter: ${err.message}`, "error");
    }
  }
}
