// Charts with uPlot: a rolling live chart and a history chart with zoom.

import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

const COLORS = ["#0b57d0", "#1a7f37", "#cf222e", "#8250df", "#9a6700", "#0550ae", "#bf3989", "#116329", "#953800", "#6639ba"];

function size(el: HTMLElement) {
  return { width: Math.max(280, el.clientWidth - 8), height: Math.min(320, Math.max(200, Math.round(el.clientWidth * 0.45))) };
}

function opts(el: HTMLElement, keys: string[], title: string): uPlot.Options {
  return {
    ...size(el),
    title,
    scales: { x: { time: true } },
    series: [{ label: "time" }, ...keys.map((k, i) => ({ label: k, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true }))],
    axes: [{}, { size: 60 }],
    cursor: { drag: { x: true, y: false } },
  };
}

/** A chart that keeps the last `windowMs` of each numeric key and redraws at most once per frame. */
export class LiveChart {
  private plot: uPlot | null = null;
  private keys: string[] = [];
  private data = new Map<string, [number, number][]>();
  private pending = false;

  constructor(private el: HTMLElement, private windowMs = 5 * 60_000) {
    new ResizeObserver(() => this.plot?.setSize(size(this.el))).observe(el);
  }

  push(key: string, ts: number, value: unknown) {
    if (typeof value !== "number") return;
    let series = this.data.get(key);
    if (!series) {
      series = [];
      this.data.set(key, series);
    }
    series.push([ts / 1000, value]);
    const cutoff = (Date.now() - this.windowMs) / 1000;
    while (series.length && series[0][0] < cutoff) series.shift();
    if (!this.pending) {
      this.pending = true;
      requestAnimationFrame(() => { this.pending = false; this.draw(); });
    }
  }

  private draw() {
    const keys = [...this.data.keys()].sort();
    const xs = [...new Set(keys.flatMap((k) => this.data.get(k)!.map((p) => p[0])))].sort((a, b) => a - b);
    const cols = keys.map((k) => {
      const m = new Map(this.data.get(k)!);
      return xs.map((x) => m.get(x) ?? null);
    });
    const data = [xs, ...cols] as uPlot.AlignedData;
    if (!this.plot || keys.join() !== this.keys.join()) {
      this.plot?.destroy();
      this.keys = keys;
      this.plot = new uPlot(opts(this.el, keys, "Live"), data, this.el);
    } else {
      this.plot.setData(data);
    }
  }

  /** Points drawn so far, per key (for tests and the empty state). */
  count(): number {
    return [...this.data.values()].reduce((n, s) => n + s.length, 0);
  }
}

/** Draws aggregated history: `series` maps key → [[ts ms, value], …]. */
export function historyChart(el: HTMLElement, series: Record<string, { ts: number; value: unknown }[]>, title: string): uPlot | null {
  el.replaceChildren();
  const keys = Object.keys(series).filter((k) => series[k].some((p) => typeof p.value === "number")).sort();
  if (!keys.length) return null;
  const xs = [...new Set(keys.flatMap((k) => series[k].map((p) => p.ts / 1000)))].sort((a, b) => a - b);
  const cols = keys.map((k) => {
    const m = new Map(series[k].map((p) => [p.ts / 1000, typeof p.value === "number" ? p.value : null]));
    return xs.map((x) => m.get(x) ?? null);
  });
  return new uPlot(opts(el, keys, title), [xs, ...cols] as uPlot.AlignedData, el);
}
