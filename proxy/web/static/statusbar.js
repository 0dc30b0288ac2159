// The status bar: flows stored and shown, what the store dropped ("the
// oldest N flows were dropped"), live or paused, the connection.

import { fill, h } from "./util.js";

export class StatusBar {
  /** `shown()`: how many flows the table has. */
  constructor(root, shown) {
    this.root = root;
    this.shown = shown;
    this.s = {
      stored: 0,
      dropped: 0,
      total: 0,
      filter: "",
      paused: false,
      waiting: 0,
      connection: "connecting",
      error: null,
    };
  }

  set(changes) {
    Object.assign(this.s, changes);
    this.render();
  }

  render() {
    const s = this.s;
    const shown = this.shown();
    const conn =
      { open: "connected", closed: "disconnected: reconnecting…", connecting: "connecting…" }[s.connection] ||
      s.connection;
    fill(
      this.root,
      h(
        "span",
        { id: "st-live", class: `pill ${s.paused ? "paused" : "live"}`, "data-testid": "st-live" },
        s.paused ? `❚❚ paused${s.waiting ? ` · ${s.waiting} updates waiting` : ""}` : "● live",
      ),
      h(
        "span",
        { id: "st-count", "data-testid": "st-count" },
        s.filter ? `${shown} matching` : `${shown} flows`,
      ),
      h("span", { id: "st-stored", "data-testid": "st-stored" }, `${s.stored} stored`),
      s.dropped
        ? h(
            "span",
            { id: "st-dropped", class: "warn", "data-testid": "st-dropped" },
            `the oldest ${s.dropped} flows were dropped (store limit)`,
          )
        : null,
      s.error ? h("span", { class: "err" }, s.error) : null,
      h("span", { id: "st-conn", class: `conn conn-${s.connection}`, "data-testid": "st-conn" }, conn),
    );
  }
}
