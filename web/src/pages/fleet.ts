// Fleet overview: search, filter by label and group, online state, latest values.

import { api, plain, type Device, type Me, type Page, type Sample } from "../api";
import { Live } from "../live";
import { ago, fmtValue, h, main, say } from "../ui";

const ONLINE_MS = 5 * 60_000;

export async function fleetPage(me: Me) {
  const m = main();
  const canWrite = me.role !== "viewer";
  const search = h("input", { id: "search", type: "search", placeholder: "name contains…" });
  const label = h("input", { id: "label", placeholder: "site=berlin" });
  const group = h("select", { id: "group" }, h("option", { value: "" }, "All groups"));
  const tbody = h("tbody");
  const state = h("span", { class: "muted" });
  const create = h("form", { class: "inline", "aria-label": "Create a device" },
    h("label", { for: "new-name" }, "New device"),
    h("input", { id: "new-name", required: true, placeholder: "name" }),
    h("button", { type: "submit" }, "Create"));
  m.append(
    h("div", { class: "row" }, h("h1", {}, "Devices"), state),
    h("div", { class: "filters" },
      h("label", { for: "search" }, "Search"), search,
      h("label", { for: "label" }, "Label"), label,
      h("label", { for: "group" }, "Group"), group),
    canWrite ? create : "",
    h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Device"), h("th", { scope: "col" }, "Status"), h("th", { scope: "col" }, "Last seen"), h("th", { scope: "col" }, "Latest values"))),
      tbody)));

  try {
    const groups = await api<Page<{ id: string; name: string }>>("GET", "/api/v1/groups?limit=1000");
    for (const g of groups.data) group.append(h("option", { value: g.id }, g.name));
  } catch (e) { say(plain(e), "error"); }

  interface Row { seen: HTMLElement; status: HTMLElement; values: HTMLElement; last: number; latest: Record<string, Sample> }
  const rows = new Map<string, Row>();
  let live: Live | null = null;

  function setLatest(id: string, latest: Record<string, Sample>) {
    const r = rows.get(id);
    if (!r) return;
    Object.assign(r.latest, latest);
    const ts = Math.max(0, ...Object.values(latest).map((s) => s.ts));
    if (ts) r.last = Math.max(r.last, ts);
    r.values.replaceChildren(...Object.entries(r.latest).sort().slice(0, 6).map(([k, s]) => h("span", { class: "chip" }, `${k} ${fmtValue(s.value)}`)));
    paint(r);
  }
  function paint(r: { seen: HTMLElement; status: HTMLElement; last: number }) {
    const online = r.last > 0 && Date.now() - r.last < ONLINE_MS;
    r.status.textContent = online ? "online" : "offline";
    r.status.className = online ? "badge ok" : "badge";
    r.seen.textContent = r.last ? ago(r.last) : "never";
  }

  async function load() {
    live?.close();
    const q = new URLSearchParams({ limit: "100", sort: "name" });
    if (search.value) q.set("name", search.value);
    if (label.value) q.set("label", label.value);
    if (group.value) q.set("group", group.value);
    let page: Page<Device>;
    try { page = await api<Page<Device>>("GET", `/api/v1/devices?${q}`); } catch (e) { say(plain(e), "error"); return; }
    rows.clear();
    tbody.replaceChildren(...page.data.map((d) => {
      const r: Row = { seen: h("td"), status: h("span", { class: "badge" }, "…"), values: h("td", { class: "values" }), last: 0, latest: {} };
      rows.set(d.id, r);
      const labels = Object.entries(d.labels).map(([k, v]) => h("span", { class: "chip muted" }, `${k}=${v}`));
      return h("tr", {}, h("th", { scope: "row" }, h("a", { href: `#/devices/${d.id}` }, d.name), " ", ...labels), h("td", {}, r.status), r.seen, r.values);
    }));
    if (!page.data.length) tbody.append(h("tr", {}, h("td", { colspan: "4" }, "No devices match.")));
    await Promise.all(page.data.map(async (d) => {
      try { setLatest(d.id, await api<Record<string, Sample>>("GET", `/api/v1/devices/${d.id}/latest`)); } catch { /* shown as never */ }
    }));
    if (page.data.length) {
      live = new Live({ devices: page.data.map((d) => d.id) }, (msg) => {
        if (msg.type === "update") {
          const latest: Record<string, Sample> = {};
          for (const [k, pts] of Object.entries(msg.points as Record<string, Sample[]>)) latest[k] = pts[pts.length - 1];
          setLatest(msg.device, latest);
        }
      }, (s) => (state.textContent = s));
    }
  }

  let timer: number | undefined;
  const later = () => { window.clearTimeout(timer); timer = window.setTimeout(load, 250); };
  search.addEventListener("input", later);
  label.addEventListener("input", later);
  group.addEventListener("change", load);
  create.addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = (create.querySelector("#new-name") as HTMLInputElement).value;
    try {
      const d = await api<Device>("POST", "/api/v1/devices", { name });
      sessionStorage.setItem(`token:${d.id}`, d.access_token ?? "");
      location.hash = `#/devices/${d.id}`;
    } catch (err) { say(plain(err), "error"); }
  });
  const tick = window.setInterval(() => rows.forEach(paint), 10_000);
  await load();
  return () => { live?.close(); window.clearInterval(tick); };
}
