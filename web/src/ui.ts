// Small DOM helpers: elements, status messages, formatting.

type Child = Node | string | number | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K, attrs: Record<string, string | boolean | ((e: Event) => void)> = {}, ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (typeof v === "function") el.addEventListener(k.replace(/^on/, ""), v as EventListener);
    else if (v === true) el.setAttribute(k, "");
    else if (v !== false) el.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

let statusTimer: number | undefined;

/** Shows a short message to everyone, including screen readers. */
export function say(message: string, kind: "info" | "error" = "info") {
  const s = document.getElementById("status")!;
  s.textContent = message;
  s.className = kind;
  window.clearTimeout(statusTimer);
  statusTimer = window.setTimeout(() => { s.textContent = ""; s.className = ""; }, kind === "error" ? 8000 : 4000);
}

export function fmtValue(v: unknown): string {
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(Math.abs(v) < 10 ? 2 : 1);
  return String(v);
}

export function ago(ms: number): string {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}

export function main(): HTMLElement {
  const m = document.getElementById("main")!;
  m.replaceChildren();
  return m;
}
