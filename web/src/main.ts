// The dashboard's entry: session, navigation, and the page router.

import "./style.css";
import { api, clearSession, token, type Me } from "./api";
import { say } from "./ui";
import { loginPage } from "./pages/login";
import { fleetPage } from "./pages/fleet";
import { devicePage } from "./pages/device";
import { keysPage } from "./pages/keys";
import { usersPage } from "./pages/users";

let me: Me | null = null;
let cleanup: (() => void) | null = null;

export async function whoami(force = false): Promise<Me | null> {
  if (!token()) return null;
  if (!me || force) {
    try { me = await api<Me>("GET", "/api/v1/me"); } catch { me = null; }
  }
  return me;
}

function header(m: Me | null) {
  const top = document.getElementById("top")!;
  top.hidden = !m;
  if (!m) return;
  document.getElementById("who")!.textContent = `${m.email} · ${m.role}`;
  const admin = m.role === "owner" || m.role === "admin";
  top.querySelectorAll<HTMLElement>("[data-admin]").forEach((a) => (a.hidden = !admin));
  top.querySelectorAll<HTMLAnchorElement>("nav a").forEach((a) => {
    if (location.hash.startsWith(a.getAttribute("href")!)) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
}

async function route() {
  cleanup?.();
  cleanup = null;
  const hash = location.hash || "#/devices";
  const m = await whoami();
  header(m);
  if (!m && hash !== "#/login") {
    location.hash = "#/login";
    return;
  }
  const [, page, id] = hash.split("/");
  try {
    switch (page) {
      case "login": cleanup = await loginPage(async () => { await whoami(true); location.hash = "#/devices"; }); break;
      case "devices": cleanup = id ? await devicePage(decodeURIComponent(id), m!) : await fleetPage(m!); break;
      case "keys": cleanup = await keysPage(); break;
      case "users": cleanup = await usersPage(m!); break;
      default: location.hash = "#/devices"; return;
    }
  } catch (e) {
    say(String(e), "error");
  }
  document.getElementById("main")?.focus({ preventScroll: true });
}

document.getElementById("logout")!.addEventListener("click", async () => {
  try { await api("POST", "/api/v1/auth/logout"); } catch { /* logged out anyway */ }
  clearSession();
  me = null;
  location.hash = "#/login";
});

window.addEventListener("hashchange", route);
route();

if ("serviceWorker" in navigator && location.protocol !== "file:") {
  navigator.serviceWorker.register("/sw.js").catch(() => { /* the app works without it */ });
}
