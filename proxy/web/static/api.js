// The admin API (docs/api.md): a fetch wrapper that turns error answers into
// ApiError (with the filter column of a 400), downloads, and the live-update
// WebSocket with reconnection.
//
// The token: the page is opened as /?token=T; the server answers with a
// cookie, so later calls need nothing. We also keep T for this tab (session
// storage) and send it as a Bearer header, so the UI keeps working where a
// browser refuses the cookie; the token is then taken out of the address bar.

const TOKEN_KEY = "tapproxy_token";

function takeToken() {
  const url = new URL(location.href);
  const fromUrl = url.searchParams.get("token");
  if (fromUrl) {
    sessionStorage.setItem(TOKEN_KEY, fromUrl);
    url.searchParams.delete("token");
    history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
  return fromUrl || sessionStorage.getItem(TOKEN_KEY);
}

const token = takeToken();

export class ApiError extends Error {
  constructor(status, message, column = null) {
    super(message);
    this.status = status;
    this.column = column;
  }
}

function headers(extra = {}) {
  return token ? { Authorization: `Bearer ${token}`, ...extra } : extra;
}

async function request(method, path, body) {
  const init = { method, headers: headers(), credentials: "same-origin" };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, `the proxy is unreachable (${err.message})`);
  }
  const type = resp.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await resp.json() : await resp.text();
  if (!resp.ok) {
    const message = (data && data.error) || `${resp.status} ${resp.statusText}`;
    throw new ApiError(resp.status, message, data && data.column !== undefined ? data.column : null);
  }
  return data;
}

export const api = {
  get: (path) => request("GET", path),
  post: (path, body = {}) => request("POST", path, body),
  put: (path, body) => request("PUT", path, body),
  del: (path) => request("DELETE", path),
};

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

export function flowPath(id, rest = "") {
  return `/api/flows/${encodeURIComponent(id)}${rest}`;
}

/** The raw body's URL (images load it directly; the cookie authenticates). */
export function bodyUrl(id, side) {
  return flowPath(id, `/body/${side}`);
}

/** The raw body bytes. */
export async function fetchBody(id, side) {
  const resp = await fetch(bodyUrl(id, side), { headers: headers(), credentials: "same-origin" });
  if (!resp.ok) throw new ApiError(resp.status, `${resp.status} ${resp.statusText}`);
  return new Uint8Array(await resp.arrayBuffer());
}

function filenameOf(resp, fallback) {
  const disposition = resp.headers.get("Content-Disposition") || "";
  const m = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(disposition);
  return m ? decodeURIComponent(m[1]) : fallback;
}

/** Fetches a download (GET, or POST with a JSON body) and saves it as a file. */
export async function download(path, body, fallbackName) {
  const init = { method: body ? "POST" : "GET", headers: headers(), credentials: "same-origin" };
  if (body) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const resp = await fetch(path, init);
  if (!resp.ok) {
    let message = `${resp.status} ${resp.statusText}`;
    try {
      message = (await resp.json()).error || message;
    } catch {
      /* not JSON */
    }
    throw new ApiError(resp.status, message);
  }
  const blob = await resp.blob();
  const url = URL.createObjectURL(blob);
  const a = Object.assign(document.createElement("a"), {
    href: url,
    download: filenameOf(resp, fallbackName),
  });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/**
 * The /api/updates WebSocket. Calls onMessages(list) with each batch (the
 * server sends one message or an array of them) and onState("open" |
 * "closed" | "connecting"). Reconnects with a growing delay (0.5 s to 10 s);
 * after a reconnection the caller reloads the list (updates were missed).
 */
export class Updates {
  constructor({ onMessages, onState }) {
    this.onMessages = onMessages;
    this.onState = onState;
    this.delay = 500;
    this.ws = null;
    this.stopped = false;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  connect() {
    if (this.stopped) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${location.host}/api/updates${query({ token })}`;
    this.onState("connecting");
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
      this.delay = 500;
      this.onState("open");
    };
    ws.onmessage = (event) => {
      let data;
      try {
        data = JSON.parse(event.data);
      } catch {
        return;
      }
      this.onMessages(Array.isArray(data) ? data : [data]);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.onState("closed");
      if (this.stopped) return;
      setTimeout(() => this.connect(), this.delay);
      this.delay = Math.min(this.delay * 2, 10_000);
    };
  }

  stop() {
    this.stopped = true;
    if (this.ws) this.ws.close();
  }
}
