// Calls to the service's API with the user's key. Every problem+json answer becomes an
// ApiError carrying what the service said (status, code, title, detail, field, request id).

const ROOT = document.querySelector('meta[name="forecast-api-root"]')?.content ?? "";
const KEY_ITEM = "forecast-ui.key";
const STREAMS_ITEM = "forecast-ui.streams.";

export class ApiError extends Error {
  constructor(status, problem, fallback, requestId) {
    const body = problem && typeof problem === "object" ? problem : {};
    super(body.detail || body.title || fallback || `HTTP ${status}`);
    this.status = status;
    this.code = body.code ?? null;
    this.title = body.title ?? (status ? `HTTP ${status}` : "Network error");
    this.detail = body.detail ?? this.message;
    this.field = body.field ?? null;
    this.requestId = body.request_id ?? requestId ?? null;
  }
}

// The key lives in this browser only: localStorage when the user asks it to be remembered,
// else sessionStorage (gone with the tab). It is sent as a header, never in a URL.
export const keys = {
  get() {
    return sessionStorage.getItem(KEY_ITEM) ?? localStorage.getItem(KEY_ITEM) ?? "";
  },
  set(key, remember) {
    this.forget();
    (remember ? localStorage : sessionStorage).setItem(KEY_ITEM, key);
  },
  forget() {
    localStorage.removeItem(KEY_ITEM);
    sessionStorage.removeItem(KEY_ITEM);
  },
};

export function authHeaders(accept) {
  const headers = new Headers({ Accept: accept });
  const key = keys.get();
  if (key) headers.set("Authorization", `Bearer ${key}`);
  return headers;
}

export function url(path) {
  return ROOT + path;
}

export async function problemOf(response) {
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  return new ApiError(response.status, body, text.slice(0, 200), response.headers.get("x-request-id"));
}

export async function call(method, path, body) {
  const init = { method, headers: authHeaders("application/json"), cache: "no-store" };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers.set("Content-Type", "application/json");
  }
  let response;
  try {
    response = await fetch(url(path), init);
  } catch (err) {
    throw new ApiError(0, null, `the service cannot be reached (${err.message})`);
  }
  if (!response.ok) throw await problemOf(response);
  if (response.status === 204) return null;
  return response.json();
}

export const streamPath = (id) => `/v1/streams/${encodeURIComponent(id)}`;

//: How many readings to ask for: every one the stream keeps (FORECAST_HISTORY_LENGTH).
export const ALL_READINGS = 4096;

export const api = {
  models: () => call("GET", "/v1/models"),
  model: (name) => call("GET", `/v1/models/${encodeURIComponent(name)}`),
  stream: (id, readings = 0) =>
    call("GET", streamPath(id) + (readings ? `?readings=${readings}` : "")),
  createStream: (id, model) => call("PUT", streamPath(id), { model }),
};

// The streams this browser has opened or created, per key (a tenant's list is not another's).
// FNV-1a names the list: it only keeps lists apart, the key itself is stored beside it.
function listItem() {
  let hash = 0x811c9dc5;
  for (const ch of keys.get()) {
    hash ^= ch.codePointAt(0);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return STREAMS_ITEM + hash.toString(16);
}

export const remembered = {
  list() {
    try {
      const ids = JSON.parse(localStorage.getItem(listItem()) ?? "[]");
      return Array.isArray(ids) ? ids.filter((id) => typeof id === "string") : [];
    } catch {
      return [];
    }
  },
  add(id) {
    const ids = this.list().filter((x) => x !== id);
    ids.unshift(id);
    localStorage.setItem(listItem(), JSON.stringify(ids.slice(0, 200)));
  },
  remove(id) {
    localStorage.setItem(listItem(), JSON.stringify(this.list().filter((x) => x !== id)));
  },
};

// The tenant's streams. GET /v1/streams (issue 15 item 5) lists them on the service; until a
// service has that route (a 404 or 405 here), the page lists the streams opened or created in
// this browser. Either way the answer is {source, streams: [{stream_id, model?, seq?,
// last_timestamp?}], more}: the one place the page learns which streams there are.
export async function listStreams() {
  try {
    const page = await call("GET", "/v1/streams");
    const items = Array.isArray(page?.streams) ? page.streams : [];
    return {
      source: "service",
      streams: items.map((s) => ({
        stream_id: s.stream_id ?? s.id,
        model: s.model,
        seq: s.seq,
        last_timestamp: s.last_timestamp,
      })),
      more: Boolean(page?.next_cursor ?? page?.cursor),
    };
  } catch (err) {
    if (!(err instanceof ApiError) || (err.status !== 404 && err.status !== 405)) throw err;
    return {
      source: "browser",
      streams: remembered.list().map((id) => ({ stream_id: id })),
      more: false,
    };
  }
}
