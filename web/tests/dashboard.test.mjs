// Browser tests of the dashboard: the real tributary binary, Debian's Chromium
// driven by playwright-core. Screenshots go to web/test-results/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const BIN = process.env.DASHBOARD_TEST_BIN ?? join(here, "../../target/debug/tributary");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const SHOTS = join(here, "../test-results");
const EMAIL = "admin@example.com";
const PASSWORD = "browser-test-password";
mkdirSync(SHOTS, { recursive: true });

let server, base, browser, dataDir, listen;

/** Starts the server on `listen` (a fixed port after the first start, so restarts keep the address). */
async function startServer() {
  server = spawn(BIN, ["serve", "--data-dir", dataDir, "--http-listen", listen, "--mqtt-listen", "127.0.0.1:0", "--log-format", "json"], {
    env: { ...process.env, TRIBUTARY_ADMIN_EMAIL: EMAIL, TRIBUTARY_ADMIN_PASSWORD: PASSWORD },
    stdio: ["ignore", "ignore", "pipe"],
  });
  base = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("server did not start")), 30_000);
    createInterface({ input: server.stderr }).on("line", (line) => {
      try {
        const v = JSON.parse(line);
        if (v.fields?.message === "http listening") { clearTimeout(timer); resolve(`http://${v.fields.addr}`); }
      } catch { /* not JSON */ }
    });
  });
  listen = base.replace("http://", "");
}

async function stopServer() {
  const exited = new Promise((r) => server.once("exit", r));
  server.kill("SIGTERM");
  await exited;
}

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "tributary-web-"));
  listen = "127.0.0.1:0";
  await startServer();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
  server?.kill();
});

/** A fresh page that records console errors. */
async function page(viewport) {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1 });
  const p = await context.newPage();
  p.errors = [];
  p.on("console", (m) => { if (m.type() === "error") p.errors.push(m.text()); });
  p.on("pageerror", (e) => p.errors.push(String(e)));
  p.on("dialog", (d) => d.accept());
  return p;
}

async function login(p) {
  await p.goto(`${base}/`);
  await p.getByLabel("Email").fill(EMAIL);
  await p.getByLabel("Password").fill(PASSWORD);
  await p.getByRole("button", { name: "Log in" }).click();
  await p.getByRole("heading", { name: "Devices" }).waitFor();
}

async function send(token, body) {
  const res = await fetch(`${base}/api/v1/${token}/telemetry`, { method: "POST", body: JSON.stringify(body) });
  return res.status;
}

test("log in, create a device, see telemetry live, switch history range, rotate the token", async () => {
  const p = await page({ width: 1280, height: 900 });
  // A wrong password is explained in plain words.
  await p.goto(`${base}/`);
  await p.getByLabel("Email").fill(EMAIL);
  await p.getByLabel("Password").fill("not-the-password");
  await p.getByRole("button", { name: "Log in" }).click();
  await p.getByRole("alert").filter({ hasText: "Invalid email or password" }).waitFor();
  // Chromium logs the deliberate 401 as a failed resource; only errors after it count.
  p.errors.length = 0;

  await login(p);
  await p.getByLabel("New device").fill("greenhouse-1");
  await p.getByRole("button", { name: "Create" }).click();
  await p.getByRole("heading", { name: "greenhouse-1" }).waitFor();
  await p.locator("#live-state", { hasText: "live" }).waitFor();
  const token = (await p.locator("#device-token").textContent()).trim();
  assert.equal(token.length, 25, `the new device's token is shown: ${token}`);

  // Telemetry sent over HTTP appears in the latest values and on the live chart.
  for (let i = 0; i < 5; i++) {
    assert.equal(await send(token, { temp: 20 + i, hum: 40 }), 200);
    await p.waitForTimeout(150);
  }
  await p.locator('td[data-key="temp"]', { hasText: "24" }).waitFor();
  await p.locator("#live-chart canvas").waitFor();
  const legend = await p.locator("#live-chart .u-legend").textContent();
  assert.match(legend, /temp/);
  await p.screenshot({ path: join(SHOTS, "device-desktop.png"), fullPage: true });

  // History: switching the range asks for aggregates of the new range.
  const note = p.locator("#history-note");
  const before = await note.textContent();
  const historyReq = p.waitForRequest((r) => r.url().includes("/telemetry?agg=avg") && r.url().includes("interval=288000"));
  await p.getByRole("button", { name: "24 hours" }).click();
  await historyReq;
  assert.equal(await p.getByRole("button", { name: "24 hours" }).getAttribute("aria-pressed"), "true");
  assert.notEqual(await note.textContent(), before);
  await p.locator("#history-chart canvas").waitFor();

  // Rotating the token shows a new one; the old one stops working.
  await p.getByRole("button", { name: "Rotate token" }).click();
  await p.locator("#device-token").filter({ hasNotText: token }).waitFor();
  const rotated = (await p.locator("#device-token").textContent()).trim();
  assert.notEqual(rotated, token);
  assert.equal(await send(token, { temp: 1 }), 401);
  assert.equal(await send(rotated, { temp: 30 }), 200);
  await p.locator('td[data-key="temp"]', { hasText: "30" }).waitFor();

  // The fleet overview shows the device online with its latest values.
  await p.getByRole("link", { name: "← Devices" }).click();
  await p.getByRole("row", { name: /greenhouse-1/ }).getByText("online").waitFor();
  await p.screenshot({ path: join(SHOTS, "fleet-desktop.png"), fullPage: true });
  assert.deepEqual(p.errors, [], "no console errors");
});

test("the same flow works on a phone (375 px) and the app is installable", async () => {
  const p = await page({ width: 375, height: 812 });
  await login(p);
  const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no horizontal scrolling on the fleet page (${overflow}px)`);
  await p.getByLabel("New device").fill("pocket-1");
  await p.getByRole("button", { name: "Create" }).click();
  await p.getByRole("heading", { name: "pocket-1" }).waitFor();
  await p.locator("#live-state", { hasText: "live" }).waitFor();
  const token = (await p.locator("#device-token").textContent()).trim();
  for (let i = 0; i < 3; i++) {
    assert.equal(await send(token, { level: 3 + i }), 200);
    await p.waitForTimeout(150);
  }
  await p.locator('td[data-key="level"]', { hasText: "5" }).waitFor();
  await p.locator("#live-chart canvas").waitFor();
  const width = await p.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 375, `device page fits 375 px (${width})`);
  await p.screenshot({ path: join(SHOTS, "device-phone.png"), fullPage: true });

  // Installable: a manifest with icons and an active service worker.
  const manifest = await (await fetch(`${base}/manifest.webmanifest`)).json();
  assert.equal(manifest.display, "standalone");
  assert.ok(manifest.icons.some((i) => i.sizes === "512x512"));
  const sw = await p.evaluate(async () => (await navigator.serviceWorker.ready).active?.scriptURL);
  assert.match(sw, /\/sw\.js$/);
  assert.deepEqual(p.errors, [], "no console errors");
});

test("API keys and users pages work for an admin", async () => {
  const p = await page({ width: 1280, height: 900 });
  await login(p);
  await p.getByRole("link", { name: "API keys" }).click();
  await p.getByLabel("Name").fill("grafana");
  await p.getByRole("button", { name: "Create key" }).click();
  const key = (await p.locator("#new-key").textContent()).trim();
  assert.match(key, /^trb_/);
  await p.getByRole("row", { name: /grafana/ }).getByText("active").waitFor();
  await p.getByRole("row", { name: /grafana/ }).getByRole("button", { name: "Revoke" }).click();
  await p.getByRole("row", { name: /grafana/ }).getByText("revoked").waitFor();

  await p.getByRole("link", { name: "Users" }).click();
  await p.getByRole("row", { name: new RegExp(EMAIL) }).waitFor();
  await p.getByLabel("Email").fill("new.person@example.com");
  await p.getByRole("button", { name: "Invite" }).click();
  await p.getByRole("row", { name: /new.person@example.com/ }).getByText("pending").waitFor();
  await p.screenshot({ path: join(SHOTS, "users-desktop.png"), fullPage: true });
  assert.deepEqual(p.errors, [], "no console errors");
});

test("ten live series at 10 updates per second render smoothly, and the page stays live across a restart", async () => {
  const p = await page({ width: 1280, height: 900 });
  await login(p);
  await p.getByLabel("New device").fill("busy-1");
  await p.getByRole("button", { name: "Create" }).click();
  await p.getByRole("heading", { name: "busy-1" }).waitFor();
  await p.locator("#live-state", { hasText: "live" }).waitFor();
  const token = (await p.locator("#device-token").textContent()).trim();

  // Frame times while 10 keys update 10 times a second for 5 seconds.
  await p.evaluate(() => {
    window.__frames = [];
    let last = performance.now();
    const tick = (t) => { window.__frames.push(t - last); last = t; if (!window.__stop) requestAnimationFrame(tick); };
    requestAnimationFrame(tick);
  });
  const started = Date.now();
  for (let i = 0; i < 50; i++) {
    const values = Object.fromEntries(Array.from({ length: 10 }, (_, k) => [`s${k}`, Math.sin(i / 5 + k) * 10 + k * 5]));
    assert.equal(await send(token, values), 200);
    const wait = started + (i + 1) * 100 - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  await p.locator('td[data-key="s9"]').waitFor();
  const frames = await p.evaluate(() => { window.__stop = true; return window.__frames.slice(5); });
  frames.sort((a, b) => a - b);
  const p95 = frames[Math.floor(frames.length * 0.95)];
  const long = frames.filter((f) => f > 50).length;
  console.log(`# frames: ${frames.length}, median ${frames[Math.floor(frames.length / 2)].toFixed(1)} ms, p95 ${p95.toFixed(1)} ms, over 50 ms: ${long}`);
  assert.ok(frames.length > 100, `the page kept animating (${frames.length} frames in 5 s)`);
  assert.ok(long <= frames.length * 0.02, `${long} frames over 50 ms`);
  const legend = await p.locator("#live-chart .u-legend").textContent();
  for (let k = 0; k < 10; k++) assert.match(legend, new RegExp(`s${k}`));

  // Restart the server on the same address: the page reconnects and resumes.
  await stopServer();
  await p.locator("#live-state", { hasText: "reconnecting" }).waitFor();
  await startServer();
  await p.locator("#live-state", { hasText: "live" }).waitFor({ timeout: 15_000 });
  assert.equal(await send(token, { s0: 123.5 }), 200);
  await p.locator('td[data-key="s0"]', { hasText: "123.5" }).waitFor();
  assert.deepEqual(p.errors.filter((e) => !/WebSocket|ERR_CONNECTION_REFUSED|Failed to load resource/.test(e)), [], "no console errors besides the restart's refused connections");
});
