// The live list: loads the (filtered) flows page by page, then applies the
// updates WebSocket's messages to the table: new and changed flows, the
// store's drops, a clear. Paused, it keeps the updates (one per flow) and
// applies them on resume. The filter runs on the server, so with a filter
// set an unknown flow is checked by asking the server for the newest
// matching flows (at most twice a second). A "resync" (this browser missed
// updates) reloads the list.

import { api, query, Updates } from "./api.js";
import { throttle } from "./util.js";

const FIRST_PAGE = 1000;
const PAGE = 5000;
const MAX_PENDING = 50_000; // paused longer than this: reload on resume
const STATUS_EVERY = 3000; // ms between /api/status polls

export class Live {
  /** `table`: FlowTable; `status`: StatusBar; `onFlows(list)`: every applied batch. */
  constructor({ table, status, onFlows }) {
    this.table = table;
    this.status = status;
    this.onFlows = onFlows;
    this.filter = "";
    this.paused = false;
    this.pending = new Map();
    this.overflow = false;
    this.loading = null; // a load in progress: messages wait for it
    this.queued = [];
    this.generation = 0;
    this.everOpen = false;
    this.checkNew = throttle(() => this.fetchNewest().catch(() => {}), 500);
    this.statusSoon = throttle(() => this.pollStatus().catch(() => {}), 1000);
    this.updates = new Updates({
      onMessages: (list) => this.receive(list),
      onState: (state) => this.connection(state),
    });
  }

  start() {
    this.updates.start();
    setInterval(() => this.pollStatus().catch(() => {}), STATUS_EVERY);
  }

  /** Stored and dropped counts (also sent as "dropped" messages, when the server does). */
  async pollStatus() {
    if (document.hidden) return;
    const st = await api.get("/api/status");
    const before = this.status.s.dropped;
    this.status.set({ stored: st.stored, dropped: st.dropped });
    if (st.dropped > before && !this.filter && !this.paused) this.table.keepNewest(st.stored);
  }

  connection(state) {
    this.status.set({ connection: state });
    if (state !== "open") return;
    // The first connection or a reconnection: whatever happened meanwhile is in the store.
    this.load(this.filter).catch((err) => this.status.set({ error: err.message }));
    this.everOpen = true;
  }

  /** Loads the flows matching `filter` (throws the API's 400 for a bad one). */
  async load(filter) {
    const gen = ++this.generation;
    const first = api.get(`/api/flows${query({ filter, offset: 0, limit: FIRST_PAGE, order: "desc" })}`);
    this.loading = first;
    let page;
    try {
      page = await first;
    } finally {
      if (this.loading === first) this.loading = null;
    }
    if (gen !== this.generation) return;
    // Flows in progress or held are not in the store yet: they stay listed.
    const keep = filter ? [] : this.table.unstored();
    const ids = new Set(page.flows.map((f) => f.id));
    this.filter = filter;
    this.table.setRows([...page.flows, ...keep.filter((f) => !ids.has(f.id))]);
    this.status.set({ stored: page.stored, dropped: page.dropped, total: page.total, filter, error: null });
    this.onFlows(page.flows);
    document.body.dataset.listLoaded = String(gen); // (the browser test waits for it)
    const queued = this.queued.splice(0);
    if (queued.length) this.receive(queued);
    this.loadRest(gen, page.flows.length, page.total).catch((err) => this.status.set({ error: err.message }));
  }

  async loadRest(gen, offset, total) {
    while (offset < total) {
      const page = await api.get(
        `/api/flows${query({ filter: this.filter, offset, limit: PAGE, order: "desc" })}`,
      );
      if (gen !== this.generation || !page.flows.length) return;
      this.table.upsert(page.flows);
      offset += page.flows.length;
      total = page.total;
      this.status.set({ total });
    }
  }

  receive(messages) {
    if (this.loading) {
      this.queued.push(...messages);
      return;
    }
    const flows = [];
    for (const m of messages) {
      if (m.type === "flow") {
        if (this.paused) this.keep(m.flow);
        else flows.push(m.flow);
      } else if (m.type === "dropped") {
        // The flows before it in this batch are older than the drop: in first.
        if (flows.length) this.apply(flows.splice(0));
        this.status.set({ stored: m.stored, dropped: m.dropped });
        if (!this.filter && !this.paused) this.table.keepNewest(m.stored);
      } else if (m.type === "resync") {
        // The server could not keep up with this browser: it dropped updates.
        this.load(this.filter).catch((err) => this.status.set({ error: err.message }));
        return;
      } else if (m.type === "cleared") {
        this.pending.clear();
        this.table.clear();
        this.status.set({ stored: 0, total: 0 });
      }
    }
    if (flows.length) this.apply(flows);
  }

  keep(flow) {
    if (this.pending.size >= MAX_PENDING) this.overflow = true;
    else this.pending.set(flow.id, flow);
    this.status.set({ waiting: this.overflow ? MAX_PENDING : this.pending.size });
  }

  apply(flows) {
    if (flows.some((f) => f.state === "done")) this.statusSoon(); // stored and dropped moved
    if (this.filter) {
      const known = flows.filter((f) => this.table.get(f.id));
      if (known.length < flows.length) this.checkNew();
      flows = known;
    }
    if (!flows.length) return;
    this.table.upsert(flows);
    this.onFlows(flows);
  }

  /** With a filter: the newest matching flows, so new matches join the list. */
  async fetchNewest() {
    const gen = this.generation;
    const page = await api.get(
      `/api/flows${query({ filter: this.filter, offset: 0, limit: 200, order: "desc" })}`,
    );
    if (gen !== this.generation || this.paused) return;
    this.table.upsert(page.flows);
    this.status.set({ total: page.total, stored: page.stored, dropped: page.dropped });
    this.onFlows(page.flows);
  }

  setPaused(paused) {
    this.paused = paused;
    this.status.set({ paused, waiting: 0 });
    if (paused) return;
    const pending = [...this.pending.values()];
    this.pending.clear();
    if (this.overflow) {
      this.overflow = false;
      this.load(this.filter).catch((err) => this.status.set({ error: err.message }));
    } else if (pending.length) {
      this.apply(pending);
    }
  }

  async clear() {
    await api.del("/api/flows");
    this.table.clear();
    this.status.set({ stored: 0, total: 0 });
  }
}
