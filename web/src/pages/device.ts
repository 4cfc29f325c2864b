// One device: live chart, history, latest values, attributes, credentials, edit and delete.

import { api, plain, type Device, type Me, type Sample } from "../api";
import { historyChart, LiveChart } from "../chart";
import { Live } from "../live";
import { fmtValue, h, main, say } from "../ui";

const RANGES: [string, number][] = [["1 hour", 3600e3], ["24 hours", 86400e3], ["7 days", 7 * 86400e3], ["30 days", 30 * 86400e3], ["1 year", 365 * 86400e3]];

function copyButton(text: () => string, label: string) {
  return h("button", { type: "button", class: "secondary", onclick: async () => {
    try { await navigator.clipboard.writeText(text()); say(`${label} copied`); } catch { say("Copy is not available here; select the text instead.", "error"); }
  } }, `Copy ${label}`);
}

export async function devicePage(id: string, me: Me) {
  const m = main();
  const canWrite = me.role !== "viewer";
  let device: Device;
  try { device = await api<Device>("GET", `/api/v1/devices/${encodeURIComponent(id)}`); } catch (e) {
    m.append(h("h1", {}, "Device"), h("p", { class: "error", role: "alert" }, plain(e)), h("a", { href: "#/devices" }, "Back to devices"));
    return null;
  }

  const state = h("span", { class: "muted", id: "live-state" });
  const title = h("h1", {}, device.name);
  const latestBody = h("tbody");
  const liveEl = h("div", { class: "chart", id: "live-chart", role: "img", "aria-label": "Live chart of the device's numeric keys" });
  const histEl = h("div", { class: "chart", id: "history-chart", role: "img", "aria-label": "History chart" });
  const histNote = h("p", { class: "muted", id: "history-note" });
  const chart = new LiveChart(liveEl);
  const latest: Record<string, Sample> = {};

  function renderLatest() {
    latestBody.replaceChildren(...Object.keys(latest).sort().map((k) =>
      h("tr", {}, h("th", { scope: "row" }, k), h("td", { "data-key": k }, fmtValue(latest[k].value)), h("td", { class: "muted" }, new Date(latest[k].ts).toLocaleString()))));
    if (!Object.keys(latest).length) latestBody.append(h("tr", {}, h("td", { colspan: "3" }, "No telemetry yet.")));
  }

  // History: aggregates sized to the range, so a year loads as fast as an hour.
  let range = RANGES[0][1];
  let end = Date.now();
  async function loadHistory() {
    const from = Math.round(end - range);
    const interval = Math.max(1000, Math.round(range / 300));
    histNote.textContent = `Average per ${interval >= 3600e3 ? `${Math.round(interval / 3600e3)} h` : interval >= 60e3 ? `${Math.round(interval / 60e3)} min` : `${Math.round(interval / 1000)} s`}, ${new Date(from).toLocaleString()} – ${new Date(end).toLocaleString()}`;
    try {
      const series = await api<Record<string, { ts: number; value: unknown }[]>>("GET",
        `/api/v1/devices/${id}/telemetry?agg=avg&interval=${interval}&from=${from}&to=${Math.round(end)}&order=asc&limit=1000`);
      if (!historyChart(histEl, series, "History")) histEl.replaceChildren(h("p", { class: "muted" }, "No numeric data in this range."));
    } catch (e) { say(plain(e), "error"); }
  }
  const rangeButtons = RANGES.map(([label, ms]) => h("button", { type: "button", class: "secondary", "aria-pressed": ms === range ? "true" : "false", onclick: (e: Event) => {
    range = ms; end = Date.now();
    rangeButtons.forEach((b) => b.setAttribute("aria-pressed", String(b === e.currentTarget)));
    loadHistory();
  } }, label));
  const pan = (dir: number) => h("button", { type: "button", class: "secondary", "aria-label": dir < 0 ? "Earlier" : "Later", onclick: () => { end = Math.min(Date.now(), end + dir * range / 2); loadHistory(); } }, dir < 0 ? "←" : "→");

  // Credentials.
  const tokenOut = h("code", { id: "device-token" }, sessionStorage.getItem(`token:${id}`) || `${device.token_hint}… (shown only when created or rotated)`);
  const creds = h("section", { "aria-labelledby": "creds-title" },
    h("h2", { id: "creds-title" }, "Credentials"),
    h("p", {}, "Access token: ", tokenOut),
    copyButton(() => tokenOut.textContent ?? "", "token"),
    canWrite ? h("button", { type: "button", id: "rotate", onclick: async () => {
      if (!confirm("Rotate the access token? The old one stops working at once.")) return;
      try {
        const d = await api<Device>("POST", `/api/v1/devices/${id}/token`);
        tokenOut.textContent = d.access_token ?? "";
        sessionStorage.setItem(`token:${id}`, d.access_token ?? "");
        say("New token issued; the old one no longer works.");
      } catch (e) { say(plain(e), "error"); }
    } }, "Rotate token") : "",
    h("p", { class: "muted" }, "Send telemetry: ", h("code", {}, `POST ${location.origin}/api/v1/<token>/telemetry {"temp":21.5}`)));

  // Attributes.
  const attrs = h("div");
  async function loadAttributes() {
    try {
      const a = await api<Record<string, Record<string, { value: unknown }>>>("GET", `/api/v1/devices/${id}/attributes`);
      attrs.replaceChildren(...["client", "shared", "server"].map((scope) => {
        const entries = Object.entries(a[scope] ?? {});
        return h("div", {}, h("h3", {}, `${scope[0].toUpperCase()}${scope.slice(1)}`),
          entries.length ? h("dl", {}, ...entries.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, JSON.stringify(v.value))])) : h("p", { class: "muted" }, "none"));
      }));
    } catch (e) { say(plain(e), "error"); }
  }

  // Edit and delete.
  const edit = h("form", { class: "card", "aria-labelledby": "edit-title" },
    h("h2", { id: "edit-title" }, "Edit"),
    h("label", { for: "edit-name" }, "Name"), h("input", { id: "edit-name", value: device.name, required: true }),
    h("label", { for: "edit-labels" }, "Labels (key=value, comma-separated)"),
    h("input", { id: "edit-labels", value: Object.entries(device.labels).map(([k, v]) => `${k}=${v}`).join(", ") }),
    h("label", { for: "edit-tags" }, "Tags (comma-separated)"), h("input", { id: "edit-tags", value: device.tags.join(", ") }),
    h("div", { class: "row" }, h("button", { type: "submit" }, "Save"),
      h("button", { type: "button", class: "danger", onclick: async () => {
        if (!confirm(`Delete ${device.name} and all its data?`)) return;
        try { await api("DELETE", `/api/v1/devices/${id}`); say("Device deleted"); location.hash = "#/devices"; } catch (e) { say(plain(e), "error"); }
      } }, "Delete device")));
  edit.addEventListener("submit", async (e) => {
    e.preventDefault();
    const val = (sel: string) => (edit.querySelector(sel) as HTMLInputElement).value;
    const labels: Record<string, string> = {};
    for (const pair of val("#edit-labels").split(",").map((s) => s.trim()).filter(Boolean)) {
      const [k, ...v] = pair.split("=");
      labels[k.trim()] = v.join("=").trim();
    }
    const tags = val("#edit-tags").split(",").map((s) => s.trim()).filter(Boolean);
    try {
      const res = await fetch(`/api/v1/devices/${id}`, {
        method: "PATCH",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${localStorage.getItem("tributary.access")}`, "If-Match": `"v${device.version}"` },
        body: JSON.stringify({ name: val("#edit-name"), labels, tags }),
      });
      const body = await res.json();
      if (res.status === 412) { say("Someone else changed this device; reload to see their change.", "error"); return; }
      if (!res.ok) { say(body.detail ? `${body.detail}.` : "Could not save.", "error"); return; }
      device = body;
      title.textContent = device.name;
      say("Saved");
    } catch (err) { say(plain(err), "error"); }
  });

  m.append(
    h("p", {}, h("a", { href: "#/devices" }, "← Devices")),
    h("div", { class: "row" }, title, state),
    h("p", {}, ...Object.entries(device.labels).map(([k, v]) => h("span", { class: "chip muted" }, `${k}=${v}`)), ...device.tags.map((t) => h("span", { class: "chip" }, t))),
    h("section", { "aria-labelledby": "live-title" }, h("h2", { id: "live-title" }, "Live"), liveEl),
    h("section", { "aria-labelledby": "latest-title" }, h("h2", { id: "latest-title" }, "Latest values"),
      h("div", { class: "table-wrap" }, h("table", { id: "latest" }, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Key"), h("th", { scope: "col" }, "Value"), h("th", { scope: "col" }, "Time"))), latestBody))),
    h("section", { "aria-labelledby": "history-title" }, h("h2", { id: "history-title" }, "History"),
      h("div", { class: "row", role: "group", "aria-label": "Time range" }, pan(-1), ...rangeButtons, pan(1)), histNote, histEl),
    h("section", { "aria-labelledby": "attr-title" }, h("h2", { id: "attr-title" }, "Attributes"), attrs),
    creds,
    canWrite ? edit : "");

  renderLatest();
  const live = new Live({ device: id }, (msg) => {
    if (msg.type === "snapshot") {
      Object.assign(latest, msg.values);
      renderLatest();
    } else if (msg.type === "update") {
      for (const [k, pts] of Object.entries(msg.points as Record<string, Sample[]>)) {
        for (const p of pts) chart.push(k, p.ts, p.value);
        latest[k] = pts[pts.length - 1];
      }
      renderLatest();
    } else if (msg.type === "attributes") {
      loadAttributes();
    }
  }, (s) => (state.textContent = s));
  await Promise.all([loadHistory(), loadAttributes()]);
  // Keep the history current while it shows the latest range.
  const refresh = window.setInterval(() => {
    if (Date.now() - end < range / 10) { end = Date.now(); loadHistory(); }
  }, 30_000);
  return () => { live.close(); window.clearInterval(refresh); };
}
