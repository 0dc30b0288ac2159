// The flow table, virtualised: rows have one fixed height, only the rows in
// view (plus a few either side) exist in the DOM, in a pool of elements that
// is reused while scrolling. With 100,000 flows the DOM holds ~60 rows; a new
// flow is an array push (or a binary-search insert when sorted by another
// column) and a repaint of the rows in view, never a rebuild.

import { fmtClock, fmtMs, fmtSize, h } from "./util.js";

export const ROW_HEIGHT = 24;
const OVERSCAN = 8;

/** Column key, title, the cell's text, the value sorted by. */
const COLUMNS = [
  { key: "markers", title: "", text: markers, sort: null },
  { key: "seq", title: "#", text: (f) => f.seq ?? "", sort: (f) => f.seq },
  { key: "start", title: "Time", text: (f) => fmtClock(f.start), sort: (f) => f.start },
  { key: "method", title: "Method", text: (f) => f.method || "", sort: (f) => f.method },
  { key: "host", title: "Host", text: (f) => f.host || "", sort: (f) => f.host },
  { key: "path", title: "Path", text: (f) => f.path || "", sort: (f) => f.path },
  { key: "status", title: "Status", text: statusText, sort: (f) => f.status },
  { key: "type", title: "Type", text: (f) => shortType(f.type), sort: (f) => f.type },
  { key: "size", title: "Size", text: (f) => fmtSize(f.size), sort: (f) => f.size },
  { key: "duration", title: "Duration", text: (f) => fmtMs(f.duration), sort: (f) => f.duration },
  { key: "protocol", title: "Protocol", text: (f) => f.protocol || "", sort: (f) => f.protocol },
];

function markers(f) {
  let s = "";
  if (f.held) s += "‖";
  if (f.marked) s += "★";
  if (f.rules && f.rules.length) s += "⚙";
  if (f.changed) s += "✎";
  if (f.error) s += "⚠";
  return s;
}

function markerTitle(f) {
  const parts = [];
  if (f.held) parts.push(`held at ${f.held}`);
  if (f.marked) parts.push("marked");
  if (f.rules && f.rules.length) parts.push(`rules: ${f.rules.join(", ")}`);
  if (f.changed) parts.push("changed by a rule, hook or edit");
  if (f.error) parts.push(`error: ${f.error}`);
  return parts.join("\n");
}

function statusText(f) {
  if (f.status !== null && f.status !== undefined) return String(f.status);
  if (f.state === "held") return "held";
  if (f.error) return "error";
  return f.state === "live" ? "…" : "";
}

function shortType(type) {
  return (type || "").split(";")[0];
}

function statusClass(f) {
  if (f.error) return "st-err";
  const s = f.status;
  if (!s) return "";
  return s >= 500 ? "st-5xx" : s >= 400 ? "st-4xx" : s >= 300 ? "st-3xx" : "st-2xx";
}

function compare(a, b) {
  if (a === b) return 0;
  if (a === null || a === undefined) return 1; // unknowns last, either way
  if (b === null || b === undefined) return -1;
  return a < b ? -1 : 1;
}

export class FlowTable {
  /** `root`: an empty element; `onSelect(id, selection)`, `onPick(id)` when picking. */
  constructor(root, { onSelect }) {
    this.onSelect = onSelect;
    this.rows = []; // in display order
    this.byId = new Map();
    this.sortKey = "start"; // a flow gets its seq when it ends; it starts where it stays
    this.sortDesc = false;
    this.focused = null;
    this.selection = new Set();
    this.anchor = null; // shift-click range start
    this.pick = null; // a one-shot click handler ("diff with...")
    this.pool = [];
    this.frame = 0;
    // Scroll state kept from events, so that adding flows never reads layout
    // (a read after a DOM write forces a synchronous layout, per flow).
    this.scrollTop = 0;
    this.viewHeight = 600;
    this.follow = false;
    this.build(root);
  }

  build(root) {
    this.head = h(
      "div",
      { class: "ft-head", role: "row" },
      COLUMNS.map((c) =>
        h(
          "span",
          {
            class: `c-${c.key}${c.sort ? " sortable" : ""}`,
            role: "columnheader",
            "data-col": c.key,
            "data-testid": `col-${c.key}`,
            onclick: c.sort ? () => this.sortBy(c.key) : null,
          },
          c.title,
        ),
      ),
    );
    this.rowsBox = h("div", { class: "ft-rows" });
    this.spacer = h("div", { class: "ft-spacer" }, this.rowsBox);
    this.viewport = h(
      "div",
      { class: "ft-viewport", id: "flow-viewport", tabindex: "0", "data-testid": "flow-viewport" },
      this.spacer,
    );
    this.empty = h(
      "div",
      { class: "ft-empty", id: "flow-empty" },
      "No flows yet: send traffic through the proxy.",
    );
    root.append(this.head, this.viewport, this.empty);
    this.viewport.addEventListener("scroll", () => {
      this.scrollTop = this.viewport.scrollTop;
      this.schedule();
    });
    this.viewport.addEventListener("keydown", (e) => this.onKey(e));
    this.rowsBox.addEventListener("click", (e) => this.onClick(e));
    new ResizeObserver(([entry]) => {
      this.viewHeight = entry.contentRect.height;
      this.schedule();
    }).observe(this.viewport);
    this.updateHead();
  }

  get count() {
    return this.rows.length;
  }

  get(id) {
    return this.byId.get(id);
  }

  /** Replaces every row (a (re)load or a new filter). */
  setRows(list) {
    this.byId = new Map();
    for (const f of list) {
      f._v = 0;
      this.byId.set(f.id, f);
    }
    this.rows = [...this.byId.values()];
    this.sortRows();
    for (const id of [...this.selection]) if (!this.byId.has(id)) this.selection.delete(id);
    this.changed(true);
  }

  /** Adds new flows and updates known ones in place (a partial update, such
   * as {id, state, held}, only changes a known flow). Returns the new ones. */
  upsert(list) {
    const added = [];
    const follow = this.atBottom();
    const key = this.sortKey;
    for (const f of list) {
      const known = this.byId.get(f.id);
      if (known) {
        const before = known[key];
        Object.assign(known, f, { _v: known._v + 1 });
        if (known[key] !== before) this.reposition(known);
      } else if (f.start !== undefined) {
        f._v = 0;
        this.byId.set(f.id, f);
        this.insert(f);
        added.push(f);
      }
    }
    this.changed(follow && added.length > 0);
    return added;
  }

  /** A flow whose sort value changed moves, if it is now out of order (recent
   * flows are near the end, so the search from the end is short). */
  reposition(f) {
    const i = this.rows.lastIndexOf(f);
    if (i < 0) return;
    const prev = this.rows[i - 1];
    const next = this.rows[i + 1];
    if ((!prev || this.cmp(prev, f) <= 0) && (!next || this.cmp(f, next) <= 0)) return;
    this.rows.splice(i, 1);
    this.insert(f);
  }

  insert(f) {
    const last = this.rows[this.rows.length - 1];
    if (!last || this.cmp(last, f) <= 0) {
      this.rows.push(f);
      return;
    }
    let lo = 0;
    let hi = this.rows.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.cmp(this.rows[mid], f) <= 0) lo = mid + 1;
      else hi = mid;
    }
    this.rows.splice(lo, 0, f);
  }

  /** Keeps only the `keep` newest stored flows (the store dropped the oldest);
   * flows still in progress (no seq yet) stay. */
  keepNewest(keep) {
    const stored = [...this.byId.values()].filter((f) => f.seq).sort((a, b) => a.seq - b.seq);
    if (stored.length <= keep) return;
    for (const f of stored.slice(0, stored.length - keep)) {
      this.byId.delete(f.id);
      this.selection.delete(f.id);
    }
    this.rows = this.rows.filter((f) => this.byId.has(f.id));
    this.changed(false);
  }

  /** Flows not in the store yet, to keep over a reload: the held ones, and
   * those that started in the last `maxAge` seconds (an older "live" row may
   * be a flow whose end the page missed while disconnected). */
  unstored(maxAge = 600) {
    const since = Date.now() / 1000 - maxAge;
    return this.rows.filter((f) => f.state === "held" || (f.state === "live" && f.start >= since));
  }

  clear() {
    this.setRows([]);
    this.focus(null);
  }

  cmp(a, b) {
    const col = COLUMNS.find((c) => c.key === this.sortKey);
    const r = compare(col.sort(a), col.sort(b)) || compare(a.seq, b.seq);
    return this.sortDesc ? -r : r;
  }

  sortRows() {
    this.rows.sort((a, b) => this.cmp(a, b));
  }

  sortBy(key) {
    if (this.sortKey === key) this.sortDesc = !this.sortDesc;
    else [this.sortKey, this.sortDesc] = [key, false];
    this.sortRows();
    this.updateHead();
    this.changed(false);
    this.scrollTo(this.focused);
  }

  updateHead() {
    for (const cell of this.head.children) {
      const on = cell.dataset.col === this.sortKey;
      cell.classList.toggle("sorted", on);
      cell.classList.toggle("desc", on && this.sortDesc);
      cell.setAttribute("aria-sort", on ? (this.sortDesc ? "descending" : "ascending") : "none");
    }
  }

  /** Scrolled to the end (or nothing to scroll): new flows keep it there. */
  atBottom() {
    return this.scrollTop + this.viewHeight >= this.rows.length * ROW_HEIGHT - ROW_HEIGHT * 2;
  }

  /** The number of rows or the order changed: resize, maybe follow, repaint. */
  changed(followBottom) {
    this.spacer.style.height = `${this.rows.length * ROW_HEIGHT}px`;
    this.empty.hidden = this.rows.length > 0;
    if (followBottom) this.follow = true;
    this.schedule();
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  /** Paints the rows in view: once per frame at most, however many flows came. */
  render() {
    const height = this.viewHeight;
    if (this.follow) {
      this.follow = false;
      this.scrollTop = Math.max(0, this.rows.length * ROW_HEIGHT - height);
      this.viewport.scrollTop = this.scrollTop;
    }
    const top = Math.min(this.scrollTop, Math.max(0, this.rows.length * ROW_HEIGHT - height));
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(this.rows.length, Math.ceil((top + height) / ROW_HEIGHT) + OVERSCAN);
    const n = Math.max(0, last - first);
    while (this.pool.length < n) this.pool.push(this.makeRow());
    this.rowsBox.style.transform = `translateY(${first * ROW_HEIGHT}px)`;
    for (let i = 0; i < this.pool.length; i++) {
      const el = this.pool[i];
      if (i >= n) {
        if (el.isConnected) el.remove();
        continue;
      }
      if (!el.isConnected) this.rowsBox.append(el);
      this.paintRow(el, this.rows[first + i], first + i);
    }
  }

  makeRow() {
    return h(
      "div",
      { class: "ft-row", role: "row", "data-testid": "flow-row" },
      COLUMNS.map((c) => h("span", { class: `c-${c.key}`, "data-col": c.key })),
    );
  }

  paintRow(el, f, index) {
    const selected = this.selection.has(f.id);
    const stamp = `${f.id}:${f._v}:${selected}:${this.focused === f.id}:${index & 1}`;
    if (el._stamp === stamp) return;
    el._stamp = stamp;
    el.dataset.id = f.id;
    el.dataset.seq = f.seq;
    el.dataset.state = f.state || "";
    el.className = `ft-row ${index & 1 ? "odd" : ""} ${statusClass(f)}`;
    el.classList.toggle("held", !!f.held);
    el.classList.toggle("marked", !!f.marked);
    el.classList.toggle("live", f.state === "live");
    el.classList.toggle("selected", selected);
    el.classList.toggle("focused", this.focused === f.id);
    el.setAttribute("aria-selected", String(selected));
    const cells = el.children;
    for (let i = 0; i < COLUMNS.length; i++) cells[i].textContent = COLUMNS[i].text(f);
    cells[0].title = markerTitle(f);
    cells[4].title = f.url || "";
    cells[5].title = f.url || "";
    cells[3].dataset.method = f.method || "";
  }

  onClick(e) {
    const row = e.target.closest(".ft-row");
    if (!row) return;
    const id = row.dataset.id;
    if (this.pick) {
      const pick = this.pick;
      this.pick = null;
      pick(id);
      return;
    }
    if (e.metaKey || e.ctrlKey) {
      if (this.selection.has(id)) this.selection.delete(id);
      else this.selection.add(id);
      this.anchor = id;
      this.focused = id;
    } else if (e.shiftKey && this.anchor) {
      const a = this.rows.findIndex((f) => f.id === this.anchor);
      const b = this.rows.findIndex((f) => f.id === id);
      const [lo, hi] = a < b ? [a, b] : [b, a];
      this.selection = new Set(this.rows.slice(lo, hi + 1).map((f) => f.id));
      this.focused = id;
    } else {
      this.selection = new Set([id]);
      this.anchor = id;
      this.focused = id;
    }
    this.schedule();
    this.onSelect(this.focused, this.selection);
  }

  /** Focuses (and selects only) one flow, or none. */
  focus(id) {
    this.focused = id;
    this.selection = new Set(id ? [id] : []);
    this.anchor = id;
    this.scrollTo(id);
    this.schedule();
    this.onSelect(id, this.selection);
  }

  scrollTo(id) {
    if (!id) return;
    const i = this.rows.findIndex((f) => f.id === id);
    if (i < 0) return;
    const v = this.viewport;
    const y = i * ROW_HEIGHT;
    if (y < v.scrollTop) v.scrollTop = y;
    else if (y + ROW_HEIGHT > v.scrollTop + v.clientHeight) v.scrollTop = y + ROW_HEIGHT - v.clientHeight;
    this.scrollTop = v.scrollTop;
  }

  onKey(e) {
    if (e.key !== "ArrowDown" && e.key !== "ArrowUp") return;
    e.preventDefault();
    const i = this.rows.findIndex((f) => f.id === this.focused);
    const next = e.key === "ArrowDown" ? Math.min(this.rows.length - 1, i + 1) : Math.max(0, i - 1);
    if (this.rows[next]) this.focus(this.rows[next].id);
  }

  /** Every row in view order (the filtered view), as ids. */
  ids() {
    return this.rows.map((f) => f.id);
  }
}
