// API keys: create (shown once), list by prefix, revoke.

import { api, plain, type Page } from "../api";
import { h, main, say } from "../ui";

interface Key { id: string; name: string; prefix: string; scope: string; created_at: number; expires_at: number | null; revoked_at: number | null; key?: string }

export async function keysPage() {
  const m = main();
  const tbody = h("tbody");
  const shown = h("div", { role: "status" });
  const form = h("form", { class: "inline", "aria-label": "Create an API key" },
    h("label", { for: "key-name" }, "Name"), h("input", { id: "key-name", required: true }),
    h("label", { for: "key-scope" }, "Scope"),
    h("select", { id: "key-scope" }, h("option", { value: "read" }, "read"), h("option", { value: "write" }, "write"), h("option", { value: "admin" }, "admin")),
    h("button", { type: "submit" }, "Create key"));
  async function load() {
    try {
      const page = await api<Page<Key>>("GET", "/api/v1/api-keys?limit=1000");
      tbody.replaceChildren(...page.data.map((k) => h("tr", {},
        h("th", { scope: "row" }, k.name), h("td", {}, h("code", {}, `${k.prefix}…`)), h("td", {}, k.scope),
        h("td", {}, k.revoked_at ? "revoked" : k.expires_at && k.expires_at < Date.now() ? "expired" : "active"),
        h("td", {}, k.revoked_at ? "" : h("button", { type: "button", class: "danger", onclick: async () => {
          if (!confirm(`Revoke ${k.name}? It stops working at once.`)) return;
          try { await api("DELETE", `/api/v1/api-keys/${k.id}`); say("Key revoked"); load(); } catch (e) { say(plain(e), "error"); }
        } }, "Revoke")))));
      if (!page.data.length) tbody.append(h("tr", {}, h("td", { colspan: "5" }, "No API keys yet.")));
    } catch (e) { say(plain(e), "error"); }
  }
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const k = await api<Key>("POST", "/api/v1/api-keys", {
        name: (form.querySelector("#key-name") as HTMLInputElement).value,
        scope: (form.querySelector("#key-scope") as HTMLSelectElement).value,
      });
      shown.replaceChildren(h("p", { class: "card" }, "Your new key (shown only now): ", h("code", { id: "new-key" }, k.key ?? "")));
      load();
    } catch (err) { say(plain(err), "error"); }
  });
  m.append(h("h1", {}, "API keys"), form, shown,
    h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, ...["Name", "Key", "Scope", "State", ""].map((t) => h("th", { scope: "col" }, t)))), tbody)));
  await load();
  return null;
}
