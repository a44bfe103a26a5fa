// The chart of one stream: its recent readings of the model's target, and the forecast fan
// after the last one (the median, and a band between each pair of quantiles, outermost
// palest). Drawn with uPlot (vendored, window.uPlot).

const INK = "#1f2933";
const MEDIAN = "#1d4ed8";
const BAND = [37, 99, 235];
const ANOMALY = "#dc2626";
const HEIGHT = 360;

const seconds = (iso) => Date.parse(iso) / 1000;

// Which reading is an anomaly. Issue 14 adds an `anomaly` flag to each reading; once the
// service sends it, flagged readings are marked on the chart. This is the one place that reads it.
export const isAnomaly = (reading) => reading.anomaly === true;

// The columns uPlot draws, from a GET /v1/streams/{id}?readings=N answer and the model's
// features: x (epoch seconds), the target's readings, the median, each quantile, and the
// anomalies. The fan starts at the last reading, so it opens from the line.
export function chartColumns(stream, features) {
  const forecast = stream.forecast;
  const target = forecast?.target ?? features[0];
  const column = Math.max(0, features.indexOf(target));
  const readings = stream.readings ?? [];
  const steps = forecast?.steps ?? [];
  const levels = steps.length
    ? Object.keys(steps[0].quantiles).filter((q) => Number(q) !== 0.5)
      .sort((a, b) => Number(a) - Number(b))
    : [];
  const x = [];
  const actual = [];
  const median = [];
  const quantiles = levels.map(() => []);
  const anomalies = [];
  const origin = forecast?.origin ? seconds(forecast.origin) : null;
  readings.forEach((reading, i) => {
    const t = seconds(reading.timestamp);
    const value = reading.values[column];
    const joins = i === readings.length - 1 && origin !== null && t === origin;
    x.push(t);
    actual.push(value);
    median.push(joins ? value : null);
    quantiles.forEach((q) => q.push(joins ? value : null));
    anomalies.push(isAnomaly(reading) ? value : null);
  });
  for (const step of steps) {
    x.push(step.timestamp ? seconds(step.timestamp) : (origin ?? 0) + step.step);
    actual.push(null);
    median.push(step.median);
    levels.forEach((level, k) => quantiles[k].push(step.quantiles[level]));
    anomalies.push(null);
  }
  // Until the service flags readings, the chart has no anomaly series (and no legend entry).
  const flagged = readings.some((reading) => "anomaly" in reading);
  const columns = [x, actual, median, ...quantiles];
  if (flagged) columns.push(anomalies);
  return { target, levels, flagged, columns, origin };
}

function bandColour(depth, pairs) {
  const alpha = 0.1 + (0.22 * (depth + 1)) / Math.max(pairs, 1);
  return `rgba(${BAND.join(",")},${alpha.toFixed(3)})`;
}

function options(layout, width, origin) {
  const { target, levels, flagged } = layout;
  const n = levels.length;
  const series = [
    {},
    { label: target, stroke: INK, width: 2 },
    { label: "median", stroke: MEDIAN, width: 2, dash: [6, 4] },
    ...levels.map((level) => ({
      label: `q${level}`,
      stroke: `rgba(${BAND.join(",")},0.45)`,
      width: 1,
    })),
  ];
  if (flagged) {
    series.push({
      label: "anomaly",
      stroke: ANOMALY,
      fill: ANOMALY,
      paths: () => null,
      points: { show: true, space: 0, size: 9, fill: ANOMALY },
    });
  }
  // Quantile series sit at 3 .. 3+n-1, lowest first: pair the k-th lowest with the k-th highest.
  const bands = [];
  for (let k = 0; k < Math.floor(n / 2); k++) {
    bands.push({ series: [3 + n - 1 - k, 3 + k], fill: bandColour(k, Math.floor(n / 2)) });
  }
  return {
    width,
    height: HEIGHT,
    scales: { x: { time: true } },
    series,
    bands,
    axes: [{}, { label: target, size: 70 }],
    legend: { show: true },
    cursor: { drag: { x: false, y: false } },
    hooks: { draw: [(u) => drawOrigin(u, origin())] },
  };
}

// A dashed vertical line where the readings end and the forecast begins.
function drawOrigin(u, origin) {
  if (origin == null) return;
  const x = Math.round(u.valToPos(origin, "x", true));
  const { top, height } = u.bbox;
  const ctx = u.ctx;
  ctx.save();
  ctx.strokeStyle = "rgba(31,41,51,0.35)";
  ctx.setLineDash([3, 3]);
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(x, top);
  ctx.lineTo(x, top + height);
  ctx.stroke();
  ctx.restore();
}

// One chart in `element`, drawn again on each `draw(stream, features)`. What it shows is
// also written to the element's data attributes (seq, readings, steps, last reading, draws),
// for people inspecting the page and for its tests.
export class StreamChart {
  constructor(element) {
    this.element = element;
    this.plot = null;
    this.origin = null;
    this.shape = "";
    this.draws = 0;
    this.onResize = () => this.plot?.setSize({ width: this.width(), height: HEIGHT });
    window.addEventListener("resize", this.onResize);
  }

  width() {
    const style = getComputedStyle(this.element);
    const padding = parseFloat(style.paddingLeft) + parseFloat(style.paddingRight);
    return Math.max(320, (this.element.clientWidth || 800) - padding);
  }

  draw(stream, features) {
    const layout = chartColumns(stream, features);
    const shape = `${layout.target}|${layout.levels.join(",")}|${layout.flagged}`;
    this.origin = layout.origin;
    if (this.plot && shape === this.shape) {
      this.plot.setData(layout.columns);
    } else {
      this.plot?.destroy();
      this.element.replaceChildren();
      const opts = options(layout, this.width(), () => this.origin);
      this.plot = new window.uPlot(opts, layout.columns, this.element);
      this.shape = shape;
    }
    this.draws += 1;
    const readings = stream.readings ?? [];
    Object.assign(this.element.dataset, {
      seq: String(stream.seq),
      readings: String(readings.length),
      steps: String(stream.forecast?.steps?.length ?? 0),
      lastReading: readings.length ? readings[readings.length - 1].timestamp : "",
      anomalies: String(readings.filter(isAnomaly).length),
      draws: String(this.draws),
    });
  }

  destroy() {
    window.removeEventListener("resize", this.onResize);
    this.plot?.destroy();
    this.plot = null;
  }
}
