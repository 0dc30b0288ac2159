// Breakpoints: the intercept filter (PUT /api/intercept), the flows held at
// it (GET /api/held) and an editor for one of them: method, URL, headers and
// body at the request (status and headers at the response), then Resume
// (with the edit), Reply (answer the client instead of the server) or Kill.

import { api, ApiError } from "./api.js";
import { showError } from "./filter.js";
import { fill, fmtClock, h, headersToText, textToHeaders, throttle, toast } from "./util.js";

export class Intercept {
  /** `panel`: the drawer; `badge`: the held count in the toolbar; `onOpenChange(open)`. */
  constructor(panel, badge, { onOpenChange }) {
    this.panel = panel;
    this.badge = badge;
    this.onOpenChange = onOpenChange;
    this.held = [];
    this.config = { filter: "", request: true, response: false, messages: false, timeout: 300 };
    this.editing = null; // id of the held flow in the editor
    this.refreshSoon = throttle(() => this.refresh(), 200);
    this.build();
  }

  build() {
    this.filter = h("input", {
      id: "bp-filter",
      "data-testid": "bp-filter",
      class: "mono",
      placeholder: "~u /api & ~m POST",
      spellcheck: "false",
      autocomplete: "off",
    });
    this.atRequest = h("input", { type: "checkbox", id: "bp-request", checked: true });
    this.atResponse = h("input", { type: "checkbox", id: "bp-response" });
    this.atMessages = h("input", { type: "checkbox", id: "bp-messages" });
    this.timeout = h("input", { type: "number", id: "bp-timeout", min: "1", value: "300", class: "narrow" });
    this.error = h("div", { id: "bp-error", class: "filter-error", hidden: true });
    this.state = h("div", { id: "bp-state", class: "bp-state", "data-testid": "bp-state" });
    this.list = h("ul", { id: "held-list", class: "held-list", "data-testid": "held-list" });
    this.editor = h("div", { id: "held-editor", class: "held-editor", "data-testid": "held-editor" });
    const form = h(
      "form",
      {
        id: "bp-form",
        class: "bp-form",
        onsubmit: (e) => (e.preventDefault(), this.save(this.filter.value.trim())),
      },
      h("label", { for: "bp-filter" }, "Hold flows matching"),
      this.filter,
      h(
        "div",
        { class: "bp-row" },
        h("label", {}, this.atRequest, " at the request"),
        h("label", {}, this.atResponse, " at the response"),
        h("label", {}, this.atMessages, " WebSocket messages"),
        h("label", {}, "time limit ", this.timeout, " s"),
      ),
      h(
        "div",
        { class: "bp-row" },
        h(
          "button",
          { type: "submit", id: "bp-set", class: "primary", "data-testid": "bp-set" },
          "Set breakpoint",
        ),
        h("button", { type: "button", id: "bp-off", onclick: () => this.save("") }, "Turn off"),
      ),
    );
    fill(
      this.panel,
      h(
        "div",
        { class: "drawer-head" },
        h("h3", {}, "Intercept"),
        h("button", { class: "icon close", id: "intercept-close", onclick: () => this.toggle(false) }, "×"),
      ),
      form,
      this.error,
      this.state,
      h("h4", {}, "Held flows"),
      this.list,
      this.editor,
    );
  }

  get isOpen() {
    return !this.panel.hidden;
  }

  toggle(open = !this.isOpen) {
    this.panel.hidden = !open;
    document.body.classList.toggle("with-drawer", open);
    this.onOpenChange(open);
    if (open) {
      this.load().catch((err) => toast(err.message, "error"));
      this.filter.focus();
    }
  }

  async load() {
    this.config = await api.get("/api/intercept");
    this.filter.value = this.config.filter || "";
    this.atRequest.checked = !!this.config.request;
    this.atResponse.checked = !!this.config.response;
    this.atMessages.checked = !!this.config.messages;
    this.timeout.value = String(this.config.timeout ?? 300);
    this.showState();
    await this.refresh();
  }

  async save(filter) {
    const body = {
      filter,
      request: this.atRequest.checked,
      response: this.atResponse.checked,
      messages: this.atMessages.checked,
      timeout: Number(this.timeout.value) || this.config.timeout,
    };
    try {
      await api.put("/api/intercept", body);
      this.config = body;
      this.filter.value = filter;
      showError(this.error, this.filter, null);
      this.showState();
      toast(filter ? `breakpoint set: ${filter}` : "breakpoint off");
    } catch (err) {
      if (err instanceof ApiError && err.status === 400) showError(this.error, this.filter, err);
      else toast(`could not set the breakpoint: ${err.message}`, "error");
    }
  }

  showState() {
    const c = this.config;
    const where = [c.request && "request", c.response && "response", c.messages && "WebSocket messages"]
      .filter(Boolean)
      .join(" and ");
    this.state.classList.toggle("on", !!c.filter);
    fill(
      this.state,
      c.filter
        ? [
            "● Holding ",
            h("code", {}, c.filter),
            ` at the ${where || "(nowhere: tick one)"}; each goes on after ${c.timeout} s`,
          ]
        : "○ No breakpoint.",
    );
  }

  async refresh() {
    this.held = await api.get("/api/held");
    this.badge.textContent = this.held.length ? String(this.held.length) : "";
    this.badge.hidden = !this.held.length;
    fill(
      this.list,
      this.held.length
        ? this.held.map((f) =>
            h(
              "li",
              {
                class: `held-item${f.id === this.editing ? " on" : ""}`,
                "data-id": f.id,
                "data-testid": "held-item",
                onclick: () => this.edit(f.id),
              },
              h("span", { class: "phase" }, f.phase),
              h(
                "span",
                { class: "method", "data-method": f.method || "" },
                f.phase === "message" ? (f.direction === "client" ? "→ srv" : "← srv") : f.method || "",
              ),
              h("span", { class: "url mono" }, f.url || ""),
              h("span", { class: "since" }, fmtClock(f.since)),
            ),
          )
        : h("li", { class: "muted" }, "Nothing is held."),
    );
    if (this.editing && !this.held.some((f) => f.id === this.editing)) {
      this.editing = null;
      fill(this.editor);
    }
  }

  /** Opens the drawer on held flow `id`. */
  async edit(id) {
    if (!this.isOpen) this.toggle(true);
    await this.refresh();
    const f = this.held.find((x) => x.id === id);
    if (!f) return toast("that flow is no longer held");
    this.editing = id;
    for (const li of this.list.children) li.classList.toggle("on", li.dataset.id === id);
    fill(
      this.editor,
      editorFor(f, (action, body) => this.act(f, action, body)),
    );
  }

  async act(f, action, body) {
    try {
      await api.post(`/api/held/${encodeURIComponent(f.id)}/${action}`, body);
      toast(
        `${action === "kill" ? "killed" : action === "reply" ? "answered" : "resumed"}: ${f.method || ""} ${f.url || ""}`,
      );
      this.editing = null;
      fill(this.editor);
      await this.refresh();
    } catch (err) {
      toast(`${action} failed: ${err.message}`, "error");
    }
  }
}

/** The editor of one held flow; `act(action, body)` sends it. */
function editorFor(f, act) {
  if (f.phase === "message") return messageEditor(f, act);
  const atRequest = f.phase === "request";
  const method = h("input", { id: "he-method", class: "mono narrow", value: f.method || "" });
  const url = h("input", { id: "he-url", class: "mono", value: f.url || "" });
  const status = h("input", { id: "he-status", class: "mono narrow", type: "number", value: f.status ?? "" });
  const headersText = headersToText(f.headers);
  const headers = h("textarea", {
    id: "he-headers",
    class: "mono",
    rows: "8",
    spellcheck: "false",
    "data-testid": "he-headers",
  });
  headers.value = headersText;
  const body = h("textarea", {
    id: "he-body",
    class: "mono",
    rows: "6",
    spellcheck: "false",
    disabled: f.body === null,
  });
  body.value = f.body ?? (f.body_b64 ? "(binary body: kept as it is)" : "");

  function edit() {
    const out = {};
    if (atRequest) {
      if (method.value !== (f.method || "")) out.method = method.value;
      if (url.value !== (f.url || "")) out.url = url.value;
      if (f.body !== null && body.value !== f.body) out.body = body.value;
    } else if (status.value !== String(f.status ?? "")) {
      out.status = Number(status.value);
    }
    if (headers.value !== headersText) out.headers = textToHeaders(headers.value);
    return out;
  }

  const reply = replyForm((r) => act("reply", r));
  const guard = (fn) => () => {
    try {
      fn();
    } catch (err) {
      toast(err.message, "error");
    }
  };
  return h(
    "div",
    { class: "editor", "data-id": f.id },
    h(
      "div",
      { class: "editor-title" },
      `Held at the ${f.phase}`,
      h("span", { class: "muted" }, ` since ${fmtClock(f.since)}`),
    ),
    atRequest
      ? h(
          "div",
          { class: "field-row" },
          h("label", {}, "Method", method),
          h("label", { class: "grow" }, "URL", url),
        )
      : h(
          "div",
          { class: "field-row" },
          h("label", {}, "Status", status),
          h("span", { class: "muted" }, f.reason || ""),
        ),
    h("label", { class: "block" }, "Headers (one “Name: value” a line)", headers),
    atRequest
      ? h("label", { class: "block" }, "Body", body)
      : h(
          "div",
          { class: "muted" },
          "The body goes on as the server sent it: status and headers can be edited here.",
        ),
    h(
      "div",
      { class: "editor-actions" },
      h(
        "button",
        {
          id: "he-resume",
          class: "primary",
          "data-testid": "he-resume",
          onclick: guard(() => act("resume", edit())),
        },
        "▶ Resume",
      ),
      h("button", { id: "he-reply-toggle", onclick: () => (reply.hidden = !reply.hidden) }, "Reply…"),
      h("button", { id: "he-kill", class: "danger", onclick: () => act("kill", {}) }, "✕ Kill"),
    ),
    reply,
  );
}

function replyForm(send) {
  const status = h("input", { id: "he-reply-status", class: "mono narrow", type: "number", value: "200" });
  const headers = h("textarea", { id: "he-reply-headers", class: "mono", rows: "3" });
  headers.value = "Content-Type: text/plain";
  const body = h("textarea", { id: "he-reply-body", class: "mono", rows: "4" });
  const form = h(
    "div",
    { class: "reply-form", hidden: true },
    h("div", { class: "field-row" }, h("label", {}, "Status", status)),
    h("label", { class: "block" }, "Headers", headers),
    h("label", { class: "block" }, "Body", body),
    h(
      "button",
      {
        id: "he-reply",
        class: "primary",
        onclick: () => {
          try {
            send({ status: Number(status.value), headers: textToHeaders(headers.value), body: body.value });
          } catch (err) {
            toast(err.message, "error");
          }
        },
      },
      "Send this reply",
    ),
  );
  return form;
}

/** A held WebSocket message: its payload edited, the message dropped, or the connection killed. */
function messageEditor(f, act) {
  const payload = h("textarea", {
    id: "he-body",
    class: "mono",
    rows: "8",
    spellcheck: "false",
    disabled: f.body === null,
    "data-testid": "he-message",
  });
  payload.value = f.body ?? "(binary message: kept as it is)";
  const from = f.direction === "client" ? "from the client" : "from the server";
  return h(
    "div",
    { class: "editor", "data-id": f.id },
    h(
      "div",
      { class: "editor-title" },
      `A ${f.text ? "text" : "binary"} WebSocket message ${from}`,
      h("span", { class: "muted" }, ` since ${fmtClock(f.since)}`),
    ),
    h("div", { class: "muted mono" }, f.url || ""),
    h("label", { class: "block" }, "Message", payload),
    h(
      "div",
      { class: "editor-actions" },
      h(
        "button",
        {
          id: "he-resume",
          class: "primary",
          "data-testid": "he-resume",
          onclick: () => act("resume", f.body !== null && payload.value !== f.body ? { body: payload.value } : {}),
        },
        "▶ Send on",
      ),
      h("button", { id: "he-drop", onclick: () => act("resume", { drop: true }) }, "Drop it"),
      h("button", { id: "he-kill", class: "danger", onclick: () => act("kill", {}) }, "✕ Kill"),
    ),
  );
}
