// The page's start: the key form, the error banner and the views behind each #/ address.
//   #/                  the streams
//   #/streams/<id>      one stream, live
//   #/models            the models
//   #/models/<name>     one model: its manifest and held-out accuracy

import { ApiError, keys } from "./api.js";
import { errorView, modelView, modelsView, streamView, streamsView } from "./views.js";

const view = document.getElementById("view");
const banner = document.getElementById("banner");
const keyForm = document.getElementById("key-form");
const keyInput = document.getElementById("key-input");
const keyState = document.getElementById("key-state");
let current = null; // the shown view's AbortController

function showKeyState() {
  keyState.textContent = keys.get() ? "key set" : "no key";
}

function askForKey(reason) {
  keyForm.hidden = false;
  if (reason) say(reason);
  keyInput.focus();
}

function say(message) {
  banner.hidden = !message;
  banner.textContent = message ?? "";
}

// An error from any view: a missing or refused key opens the key form, others are shown.
function report(err) {
  if (err instanceof ApiError && err.status === 401) {
    askForKey(keys.get() ? "The service does not accept this API key." : "This service needs an API key.");
    return;
  }
  const problem = err instanceof ApiError ? err : null;
  const text = problem
    ? `${problem.title}: ${problem.detail}${problem.requestId ? ` (request id ${problem.requestId})` : ""}`
    : String(err?.message ?? err);
  say(text);
}

function route() {
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = Object.fromEntries(new URLSearchParams(query ?? ""));
  if (params.version) params.version = Number(params.version);
  if (parts[0] === "streams" && parts.length === 2) return { show: streamView, arg: parts[1], params };
  if (parts[0] === "models" && parts.length === 2) return { show: modelView, arg: parts[1], params };
  if (parts[0] === "models") return { show: modelsView, params };
  return { show: streamsView, params };
}

async function render() {
  current?.abort();
  current = new AbortController();
  const { show, arg, params } = route();
  const ctx = { signal: current.signal, params, report, refresh: render };
  say(null);
  try {
    await show(view, ctx, arg);
  } catch (err) {
    if (ctx.signal.aborted) return;
    if (err instanceof ApiError && err.status === 401) {
      view.replaceChildren();
      report(err);
      return;
    }
    errorView(view, err);
  }
}

keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const key = keyInput.value.trim();
  if (!key) return;
  keys.set(key, document.getElementById("key-remember").checked);
  keyInput.value = "";
  keyForm.hidden = true;
  showKeyState();
  render();
});
document.getElementById("key-forget").addEventListener("click", () => {
  keys.forget();
  keyInput.value = "";
  showKeyState();
  render();
});
document.getElementById("key-button").addEventListener("click", () => {
  keyForm.hidden = !keyForm.hidden;
  if (!keyForm.hidden) keyInput.focus();
});
window.addEventListener("hashchange", render);
showKeyState();
render();
