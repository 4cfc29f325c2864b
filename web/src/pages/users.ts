// Users and roles of the tenant, and invitations (admins).

import { api, plain, type Me, type Page } from "../api";
import { h, main, say } from "../ui";

interface Member { user_id: string; email: string; role: string }
interface Invite { id: string; email: string; role: string; status: string; token?: string }
const ROLES = ["owner", "admin", "editor", "viewer"];

export async function usersPage(me: Me) {
  const m = main();
  const members = h("tbody");
  const invites = h("tbody");
  const shown = h("div", { role: "status" });
  const form = h("form", { class: "inline", "aria-label": "Invite a user" },
    h("label", { for: "invite-email" }, "Email"), h("input", { id: "invite-email", type: "email", required: true }),
    h("label", { for: "invite-role" }, "Role"), h("select", { id: "invite-role" }, ...ROLES.slice(1).map((r) => h("option", { value: r }, r))),
    h("button", { type: "submit" }, "Invite"));
  async function load() {
    try {
      const page = await api<Page<Member>>("GET", "/api/v1/users?limit=1000");
      members.replaceChildren(...page.data.map((u) => {
        const select = h("select", { "aria-label": `Role of ${u.email}`, disabled: u.user_id === me.user_id }, ...ROLES.map((r) => h("option", { value: r, selected: r === u.role }, r)));
        select.addEventListener("change", async () => {
          try { await api("PATCH", `/api/v1/users/${u.user_id}`, { role: select.value }); say(`${u.email} is now ${select.value}`); } catch (e) { say(plain(e), "error"); load(); }
        });
        return h("tr", {}, h("th", { scope: "row" }, u.email), h("td", {}, select),
          h("td", {}, u.user_id === me.user_id ? "you" : h("button", { type: "button", class: "danger", onclick: async () => {
            if (!confirm(`Remove ${u.email} from this tenant?`)) return;
            try { await api("DELETE", `/api/v1/users/${u.user_id}`); load(); } catch (e) { say(plain(e), "error"); }
          } }, "Remove")));
      }));
      const inv = await api<Page<Invite>>("GET", "/api/v1/invites?limit=1000");
      invites.replaceChildren(...inv.data.map((i) => h("tr", {}, h("th", { scope: "row" }, i.email), h("td", {}, i.role), h("td", {}, i.status),
        h("td", {}, i.status === "pending" ? h("button", { type: "button", class: "secondary", onclick: async () => {
          try { await api("DELETE", `/api/v1/invites/${i.id}`); load(); } catch (e) { say(plain(e), "error"); }
        } }, "Revoke") : ""))));
    } catch (e) { say(plain(e), "error"); }
  }
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const i = await api<Invite>("POST", "/api/v1/invites", {
        email: (form.querySelector("#invite-email") as HTMLInputElement).value,
        role: (form.querySelector("#invite-role") as HTMLSelectElement).value,
      });
      shown.replaceChildren(h("p", { class: "card" }, "Send this invitation token to the user (shown only now): ", h("code", {}, i.token ?? "")));
      load();
    } catch (err) { say(plain(err), "error"); }
  });
  m.append(h("h1", {}, "Users and roles"),
    h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, ...["User", "Role", ""].map((t) => h("th", { scope: "col" }, t)))), members)),
    h("h2", {}, "Invitations"), form, shown,
    h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, ...["Email", "Role", "Status", ""].map((t) => h("th", { scope: "col" }, t)))), invites)));
  await load();
  return null;
}
