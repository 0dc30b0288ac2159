// Resend: a flow's request in an editor (method, URL, headers, body) sent
// again through the proxy (POST /api/flows/ID/resend, same listener and
// rules); the new flow shows up in the list like any other. Replay sends the
// request as it was, without the editor.

import { api, fetchBody, flowPath } from "./api.js";
import { $, fill, h, headersToText, textToHeaders, toast } from "./util.js";

const utf8 = new TextDecoder("utf-8", { fatal: true });

export async function replay(id) {
  try {
    const res = await api.post(flowPath(id, "/resend"), {});
    toast(
      res.error ? `replay failed: ${res.error}` : `replayed: ${res.status}`,
      res.error ? "error" : "info",
    );
  } catch (err) {
    toast(`replay failed: ${err.message}`, "error");
  }
}

export class Resend {
  /** `dialog`: the <dialog> element the editor goes in. */
  constructor(dialog) {
    this.dialog = dialog;
    this.id = null;
  }

  async open(id) {
    const flow = await api.get(flowPath(id));
    const received = flow.record && flow.record.request;
    if (!received) return toast("this flow has no request to resend", "error");
    // As it went upstream (after rules), which is also what Replay sends.
    const req = received.forwarded
      ? { ...received.forwarded, headers: received.forwarded.headers || received.headers }
      : received;
    const side = received.forwarded && flow.bodies.request_sent ? "request_sent" : "request";
    let body = "";
    let binary = false;
    if (req.body_size) {
      try {
        body = utf8.decode(await fetchBody(id, side));
      } catch {
        binary = true;
      }
    }
    this.id = id;
    this.build(req, body, binary);
    this.dialog.showModal();
  }

  build(req, bodyText, binary) {
    const method = h("input", { id: "rs-method", class: "mono narrow", value: req.method });
    const url = h("input", { id: "rs-url", class: "mono", value: req.url, spellcheck: "false" });
    const headers = h("textarea", { id: "rs-headers", class: "mono", rows: "8", spellcheck: "false" });
    headers.value = headersToText((req.headers || []).filter(([k]) => !k.startsWith(":")));
    const body = h("textarea", {
      id: "rs-body",
      class: "mono",
      rows: "8",
      spellcheck: "false",
      disabled: binary,
    });
    body.value = binary ? "(a binary body: Replay resends it as it was)" : bodyText;
    const result = h("div", { id: "rs-result", class: "rs-result", "data-testid": "rs-result" });
    const send = async () => {
      let edit;
      try {
        edit = {
          method: method.value.trim(),
          url: url.value.trim(),
          headers: fixLength(textToHeaders(headers.value), body.value, bodyText),
        };
        if (!binary) edit.body = body.value;
      } catch (err) {
        return fill(result, h("span", { class: "err" }, err.message));
      }
      fill(result, "sending…");
      try {
        const res = await api.post(flowPath(this.id, "/resend"), edit);
        fill(
          result,
          res.error
            ? h("span", { class: "err" }, res.error)
            : h("span", { class: "ok" }, `sent: the server answered ${res.status}`),
        );
      } catch (err) {
        fill(result, h("span", { class: "err" }, err.message));
      }
    };
    fill(
      this.dialog,
      h(
        "form",
        { method: "dialog", class: "dialog-form", onsubmit: (e) => (e.preventDefault(), send()) },
        h(
          "div",
          { class: "dialog-head" },
          h("h3", {}, "Edit and resend"),
          h("button", { type: "button", class: "icon close", onclick: () => this.dialog.close() }, "×"),
        ),
        h(
          "div",
          { class: "field-row" },
          h("label", {}, "Method", method),
          h("label", { class: "grow" }, "URL", url),
        ),
        h(
          "label",
          { class: "block" },
          "Headers (one “Name: value” a line; Content-Length follows the body)",
          headers,
        ),
        h("label", { class: "block" }, "Body", body),
        h(
          "div",
          { class: "dialog-actions" },
          result,
          h("button", { type: "button", onclick: () => this.dialog.close() }, "Close"),
          h("button", { type: "submit", id: "rs-send", class: "primary", "data-testid": "rs-send" }, "Send"),
        ),
      ),
    );
    $("#rs-url", this.dialog).focus();
  }
}

/** A Content-Length the user left alone follows an edited body. */
function fixLength(headers, body, original) {
  if (body === original) return headers;
  const length = String(new TextEncoder().encode(body).length);
  return headers.map(([k, v]) => (k.toLowerCase() === "content-length" ? [k, length] : [k, v]));
}
