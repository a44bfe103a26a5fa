// The page's views: the streams, one stream live, the models, one model's accuracy.
// Text from the service goes in with textContent only, never as HTML.

import { ALL_READINGS, ApiError, api, listStreams, remembered } from "./api.js";
import { StreamChart } from "./chart.js";
import { follow } from "./events.js";

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value == null) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  element.append(...children.flat().filter((c) => c != null && c !== false));
  return element;
}

const streamHref = (id) => `#/streams/${encodeURIComponent(id)}`;
const modelHref = (name) => `#/models/${encodeURIComponent(name)}`;
const modelName = (model) => (typeof model === "string" ? model : model?.name);

export function when(iso) {
  if (!iso) return "never";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

function number(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "—";
  const size = Math.abs(value);
  if (size !== 0 && (size >= 1e6 || size < 1e-3)) return value.toExponential(3);
  return value.toLocaleString(undefined, { maximumSignificantDigits: 5 });
}

// ---------------------------------------------------------------------------- streams ------

export async function streamsView(view, ctx) {
  const listing = await listStreams();
  const rows = await Promise.all(
    listing.streams.map(async (item) => {
      if (listing.source === "service") return { item, stream: item };
      try {
        return { item, stream: await api.stream(item.stream_id) };
      } catch (err) {
        return { item, error: err };
      }
    }),
  );
  let models = [];
  try {
    models = (await api.models()).models;
  } catch (err) {
    ctx.report(err);
  }
  const note = listing.source === "browser"
    ? "Streams opened or created in this browser with this key (this service cannot list a tenant's streams yet)."
    : "This tenant's streams.";
  const table = h("table", { class: "streams" },
    h("thead", {}, h("tr", {}, ["stream", "model", "seq", "last reading", ""].map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.map(({ item, stream, error }) => h("tr", {},
      h("td", {}, h("a", { href: streamHref(item.stream_id) }, item.stream_id)),
      h("td", {}, stream ? h("a", { href: modelHref(modelName(stream.model)) }, modelName(stream.model) ?? "") : ""),
      h("td", { class: "num" }, stream ? String(stream.seq ?? "") : ""),
      h("td", {}, stream ? when(stream.last_timestamp) : (error?.title ?? "")),
      h("td", {}, listing.source === "browser"
        ? h("button", { type: "button", class: "link", onclick: () => { remembered.remove(item.stream_id); ctx.refresh(); } }, "remove from list")
        : ""),
    ))),
  );
  const openForm = h("form", { class: "inline-form", id: "open-form" },
    h("label", { for: "open-id" }, "Open a stream"),
    h("input", { id: "open-id", required: true, placeholder: "stream id", spellcheck: "false" }),
    h("button", { type: "submit" }, "Open"),
  );
  openForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const id = openForm.querySelector("#open-id").value.trim();
    if (!id) return;
    try {
      await api.stream(id);
      remembered.add(id);
      location.hash = streamHref(id);
    } catch (err) {
      ctx.report(err);
    }
  });
  const createForm = h("form", { class: "inline-form", id: "create-form" },
    h("label", { for: "create-id" }, "Create a stream"),
    h("input", { id: "create-id", required: true, placeholder: "stream id", spellcheck: "false" }),
    h("select", { id: "create-model", "aria-label": "model" },
      models.map((m) => h("option", { value: m.name }, `${m.name} (v${m.latest.version}, ${m.latest.kind})`))),
    h("button", { type: "submit" }, "Create"),
  );
  createForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const id = createForm.querySelector("#create-id").value.trim();
    const model = createForm.querySelector("#create-model").value;
    if (!id || !model) return;
    try {
      await api.createStream(id, model);
      remembered.add(id);
      location.hash = streamHref(id);
    } catch (err) {
      ctx.report(err);
    }
  });
  view.replaceChildren(
    h("h1", {}, "Streams"),
    h("p", { class: "muted", id: "list-source", "data-source": listing.source }, note),
    rows.length ? table : h("p", { class: "empty" }, "No streams yet: open or create one."),
    listing.more ? h("p", { class: "muted" }, "More streams exist than this page shows.") : "",
    h("div", { class: "forms" }, openForm, createForm),
  );
}

// ----------------------------------------------------------------------------- stream ------

export async function streamView(view, ctx, streamId) {
  const first = await api.stream(streamId, ALL_READINGS);
  remembered.add(streamId);
  const features = (await modelVersion(modelName(first.model), first.model.version)).features;
  const live = h("span", { id: "live", class: "live", "data-state": "connecting" }, "connecting");
  const facts = h("dl", { class: "facts" });
  const chartBox = h("div", { id: "chart", class: "chart" });
  const steps = h("details", { class: "steps" });
  view.replaceChildren(
    h("h1", {}, h("span", { class: "muted" }, "stream "), streamId, " ", live),
    facts,
    chartBox,
    steps,
  );
  const chart = new StreamChart(chartBox);
  let shown = first;
  const show = (stream) => {
    if (ctx.signal.aborted) return; // the page has moved on: draw nothing more here
    shown = stream;
    facts.replaceChildren(
      h("dt", {}, "model"),
      h("dd", {}, h("a", { href: modelHref(stream.model.name) }, `${stream.model.name} v${stream.model.version}`)),
      h("dt", {}, "readings applied"), h("dd", { id: "seq" }, String(stream.seq)),
      h("dt", {}, "last reading"), h("dd", {}, when(stream.last_timestamp)),
      h("dt", {}, "forecast"), h("dd", {}, stream.forecast
        ? `${stream.forecast.steps.length} steps of ${stream.forecast.target} after the last reading`
        : "none yet: send a reading"),
      h("dt", {}, "last anomaly"), h("dd", { id: "last-anomaly" }, stream.last_anomaly
        ? `${number(stream.last_anomaly.value)} at ${when(stream.last_anomaly.timestamp)} (outside ${number(stream.last_anomaly.low)} … ${number(stream.last_anomaly.high)})`
        : "none"),
    );
    steps.replaceChildren(h("summary", {}, "Forecast table"), stepsTable(stream.forecast));
    chart.draw(stream, features);
  };
  show(first);

  // Each update is heard as a server-sent event; the readings behind it are then read once
  // (an event carries the forecast, not the reading that made it). Updates that come while a
  // read is under way are folded into one more read.
  let reading = null;
  let again = false;
  const refresh = async () => {
    if (reading) {
      again = true;
      return;
    }
    reading = (async () => {
      do {
        again = false;
        try {
          const stream = await api.stream(streamId, ALL_READINGS);
          show(stream);
        } catch (err) {
          ctx.report(err);
        }
      } while (again && !ctx.signal.aborted);
    })();
    await reading;
    reading = null;
  };
  follow(streamId, {
    onEvent: ({ event, data }) => {
      if (event === "snapshot" && data.seq === shown.seq && data.last_timestamp === shown.last_timestamp) return;
      if (event === "snapshot" || event === "forecast") refresh();
    },
    onState: (state, error) => {
      if (state === "live") live.dataset.connections = String(Number(live.dataset.connections ?? 0) + 1);
      live.dataset.state = state;
      live.textContent = state;
      if (error && state === "stopped") ctx.report(error);
    },
  }, ctx.signal);
  ctx.signal.addEventListener("abort", () => chart.destroy(), { once: true });
}

function stepsTable(forecast) {
  if (!forecast) return h("p", { class: "muted" }, "No forecast yet.");
  const levels = Object.keys(forecast.steps[0]?.quantiles ?? {});
  return h("table", { class: "numbers" },
    h("thead", {}, h("tr", {}, h("th", {}, "step"), h("th", {}, "time"), levels.map((q) => h("th", {}, `q${q}`)))),
    h("tbody", {}, forecast.steps.map((s) => h("tr", {},
      h("td", { class: "num" }, String(s.step)),
      h("td", {}, when(s.timestamp)),
      levels.map((q) => h("td", { class: "num" }, number(s.quantiles[q]))),
    ))),
  );
}

// ----------------------------------------------------------------------------- models ------

const cache = new Map();

async function modelVersion(name, version) {
  if (!cache.has(name)) cache.set(name, api.model(name));
  let model;
  try {
    model = await cache.get(name);
  } catch (err) {
    cache.delete(name);
    throw err;
  }
  return model.versions.find((v) => v.version === version) ?? model.versions.at(-1);
}

export async function modelsView(view) {
  const { models } = await api.models();
  view.replaceChildren(
    h("h1", {}, "Models"),
    h("table", { class: "models" },
      h("thead", {}, h("tr", {}, ["model", "kind", "versions", "features", "horizon", "every"].map((t) => h("th", {}, t)))),
      h("tbody", {}, models.map((m) => h("tr", {},
        h("td", {}, h("a", { href: modelHref(m.name) }, m.name)),
        h("td", {}, m.latest.kind),
        h("td", {}, m.versions.join(", ")),
        h("td", {}, m.latest.features.join(", ")),
        h("td", { class: "num" }, String(m.latest.horizon)),
        h("td", {}, duration(m.latest.frequency)),
      ))),
    ),
  );
}

function duration(seconds) {
  const units = [["d", 86400], ["h", 3600], ["min", 60], ["s", 1]];
  for (const [unit, size] of units) {
    if (seconds >= size && seconds % size === 0) return `${seconds / size} ${unit}`;
  }
  return `${seconds} s`;
}

// Held-out metrics where lower is better; coverage is best closest to its nominal level.
const LOWER_IS_BETTER = new Set(["mae", "rmse", "mase", "smape", "mape", "pinball", "crps"]);
const METRIC_ORDER = ["mae", "rmse", "mase", "pinball", "coverage"];
const METRIC_NAMES = { mae: "MAE", rmse: "RMSE", mase: "MASE", pinball: "pinball loss" };
const METHOD_NAMES = {
  naive: "naive (last value)",
  seasonal_naive: "seasonal naive",
  ets: "ETS (damped Holt-Winters)",
};

// A variant of a metric ("mae_validation", "coverage_uncalibrated") is judged as its base.
const baseMetric = (metric) => metric.split("_")[0];

// "seasonal_naive_336" -> "seasonal naive (336)", "ets_48_336" -> "ETS (damped Holt-Winters) (48, 336)".
function methodName(method) {
  if (METHOD_NAMES[method]) return METHOD_NAMES[method];
  const match = /^(.*?)((?:_\d+)+)$/.exec(method);
  if (!match || !METHOD_NAMES[match[1]]) return method;
  return `${METHOD_NAMES[match[1]]} (${match[2].slice(1).split("_").join(", ")})`;
}

export function bestOf(accuracy, metric) {
  let best = null;
  let bestScore = Infinity;
  const base = baseMetric(metric);
  for (const [method, metrics] of Object.entries(accuracy)) {
    const value = metrics[metric];
    if (typeof value !== "number" || !Number.isFinite(value)) continue;
    let score;
    if (base === "coverage") score = Math.abs(value - (metrics.coverage_nominal ?? value));
    else if (LOWER_IS_BETTER.has(base)) score = value;
    else return null;
    if (score < bestScore) {
      bestScore = score;
      best = method;
    }
  }
  return best;
}

function accuracyTable(manifest) {
  const accuracy = manifest.accuracy;
  if (!accuracy || !Object.keys(accuracy).length) {
    return h("p", { class: "muted", id: "no-accuracy" }, "This model's manifest records no held-out accuracy.");
  }
  const methods = Object.keys(accuracy).sort((a, b) => (a === "model") ? -1 : (b === "model") ? 1 : 0);
  const seen = new Set(methods.flatMap((m) => Object.keys(accuracy[m])));
  seen.delete("coverage_nominal");
  const metrics = [...METRIC_ORDER.filter((m) => seen.has(m)), ...[...seen].filter((m) => !METRIC_ORDER.includes(m)).sort()];
  const nominal = accuracy.model?.coverage_nominal;
  const best = Object.fromEntries(metrics.map((m) => [m, bestOf(accuracy, m)]));
  const heading = (m) => m === "coverage" && typeof nominal === "number"
    ? `coverage (nominal ${Math.round(nominal * 100)}%)` : (METRIC_NAMES[m] ?? m);
  return h("table", { class: "numbers accuracy", id: "accuracy" },
    h("thead", {}, h("tr", {}, h("th", {}, "method"), metrics.map((m) => h("th", { "data-metric": m }, heading(m))))),
    h("tbody", {}, methods.map((method) => h("tr", { class: method === "model" ? "this-model" : "", "data-method": method },
      h("th", { scope: "row" }, method === "model" ? `${manifest.name} (this model)` : methodName(method)),
      metrics.map((m) => h("td", {
        class: best[m] === method ? "num best" : "num",
        "data-metric": m,
        "data-value": accuracy[method][m] ?? "",
      }, number(accuracy[method][m]))),
    ))),
  );
}

export async function modelView(view, ctx, name) {
  const model = await api.model(name);
  cache.set(name, Promise.resolve(model));
  const versions = model.versions;
  const chosen = versions.find((v) => v.version === ctx.params.version) ?? versions.find((v) => v.version === model.latest) ?? versions.at(-1);
  const training = chosen.training ?? {};
  const split = training.split ? Object.entries(training.split).map(([k, v]) => `${k} ${v}`).join(", ") : null;
  const facts = [
    ["kind", chosen.kind],
    ["features", chosen.features.join(", ")],
    ["target", chosen.target],
    ["every", duration(chosen.frequency)],
    ["horizon", `${chosen.horizon} steps (${duration(chosen.horizon * chosen.frequency)})`],
    ["quantiles", chosen.quantiles.join(", ")],
    ["state size", String(chosen.state_size)],
    ["fingerprint", chosen.fingerprint.slice(0, 16)],
    ["providers", chosen.providers.join(", ")],
    ["trained on", training.dataset],
    ["split", split],
    ["epochs", training.epochs],
    ["baselines", training.baselines],
    ["MASE scale", training.mase_scale],
    ["forecast origins", training.origins],
  ].filter(([, v]) => v != null && v !== "");
  view.replaceChildren(
    h("h1", {}, h("span", { class: "muted" }, "model "), name, ` v${chosen.version}`),
    versions.length > 1
      ? h("p", {}, "versions: ", versions.map((v) => h("a", { href: `${modelHref(name)}?version=${v.version}`, class: "version" }, `v${v.version}`)))
      : "",
    chosen.description ? h("p", { class: "description" }, chosen.description) : "",
    h("h2", {}, "Held-out accuracy"),
    h("p", { class: "muted" }, "On the test split the model never saw in training, next to the baselines its trainer ran; the best of each column is marked."),
    accuracyTable(chosen),
    liveAccuracy(chosen),
    h("h2", {}, "Manifest"),
    h("dl", { class: "facts" }, facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))])),
  );
}

// The last hour's scores of this version on the replica that answered, beside the held-out.
function liveAccuracy(chosen) {
  const live = chosen.live;
  if (!live) return "";
  const rows = [
    ["readings scored", String(live.scored)],
    ["not scored (no forecast issued for them)", String(live.unscored)],
    ["MAE", number(live.mae)],
    ["MAE ÷ naive MAE", number(live.relative_mae)],
    ["outer interval coverage", live.coverage == null ? "—" : `${Math.round(live.coverage * 100)}%`],
    ["mean pinball loss", number(live.mean_pinball)],
    ["anomalies", String(live.anomalies)],
  ];
  return h("section", { id: "live-accuracy" },
    h("h2", {}, "Live accuracy, last hour"),
    h("p", { class: "muted", id: "live-headline" }, chosen.headline ?? ""),
    h("dl", { class: "facts" }, rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
  );
}

export function errorView(view, err) {
  const problem = err instanceof ApiError ? err : new ApiError(0, null, String(err?.message ?? err));
  view.replaceChildren(
    h("h1", {}, problem.title),
    h("p", { id: "error-detail" }, problem.detail),
    problem.requestId ? h("p", { class: "muted" }, `request id ${problem.requestId}`) : "",
  );
}
