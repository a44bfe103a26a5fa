// A stream's server-sent events (GET /v1/streams/{id}/forecasts), read with fetch.
//
// EventSource cannot send headers, and the service takes keys in headers only (never in a
// URL, where they would end up in access logs and browser history), so the page reads the
// event stream itself: fetch with the Authorization header, then the text/event-stream
// format parsed as the HTML standard defines it. A stream that ends (the service restarts,
// its bus loses the store, an `error` event) is followed again after a growing pause; the
// service then sends a fresh `snapshot`, so nothing heard in between is lost for the page.

import { authHeaders, problemOf, streamPath, url } from "./api.js";

const FIRST_PAUSE_MS = 500;
const LONGEST_PAUSE_MS = 15000;
// Answers a retry cannot change: the page says why and stops following.
const FINAL = new Set([400, 401, 403, 404, 422]);

// The events of a text/event-stream body: {event, data, id}; comments are skipped.
export async function* parseEvents(body, signal) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  const onAbort = () => reader.cancel().catch(() => {});
  signal?.addEventListener("abort", onAbort, { once: true });
  let buffer = "";
  let event = "";
  let data = [];
  let id = null;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      // A line ends at CRLF, LF or CR; a CR last in the buffer may be half of a CRLF.
      const lines = buffer.split(/\r\n|\n|\r(?!$)/);
      buffer = lines.pop();
      for (const line of lines) {
        if (line === "") {
          if (data.length) yield { event: event || "message", data: data.join("\n"), id };
          event = "";
          data = [];
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? "" : line.slice(colon + 1);
        if (text.startsWith(" ")) text = text.slice(1);
        if (field === "event") event = text;
        else if (field === "data") data.push(text);
        else if (field === "id") id = text;
      }
    }
  } finally {
    signal?.removeEventListener("abort", onAbort);
    reader.releaseLock();
  }
}

function pause(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

// Follow one stream until `signal` aborts. `onEvent({event, data})` gets each snapshot and
// forecast (data parsed); `onState(state, error?)` hears "connecting", "live", "reconnecting"
// and "stopped" (with the ApiError that stopped it).
export async function follow(streamId, { onEvent, onState }, signal) {
  let wait = FIRST_PAUSE_MS;
  while (!signal.aborted) {
    onState("connecting");
    try {
      const response = await fetch(url(`${streamPath(streamId)}/forecasts`), {
        headers: authHeaders("text/event-stream"),
        cache: "no-store",
        signal,
      });
      if (!response.ok) {
        const error = await problemOf(response);
        if (FINAL.has(response.status)) {
          onState("stopped", error);
          return;
        }
        throw error;
      }
      for await (const message of parseEvents(response.body, signal)) {
        if (message.event === "error") break; // the feed failed: follow again
        let data = null;
        try {
          data = JSON.parse(message.data);
        } catch {
          continue;
        }
        if (message.event === "snapshot") {
          wait = FIRST_PAUSE_MS;
          onState("live");
        }
        onEvent({ event: message.event, data });
      }
    } catch (err) {
      if (signal.aborted) return;
      onState("reconnecting", err);
    }
    if (signal.aborted) return;
    onState("reconnecting");
    await pause(wait * (0.5 + Math.random() / 2), signal);
    wait = Math.min(wait * 2, LONGEST_PAUSE_MS);
  }
}
