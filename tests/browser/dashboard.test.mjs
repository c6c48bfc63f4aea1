// The dashboard in headless Chromium against the real binary, started by
// scripts/browser-tests.sh (BASE, MANAGEMENT_KEY, CHROMIUM, SHOTS, LABEL). Every number on a
// page is compared with the API's answer to the same question; every page must load without a
// console error and without a request to any host but the server.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const BASE = process.env.BASE;
const KEY = process.env.MANAGEMENT_KEY;
const LABEL = process.env.LABEL || "embedded";
const SHOTS = process.env.SHOTS || "target/browser";
const ORIGIN = new URL(BASE).origin;
// Long enough for a debug build on a loaded machine; nothing is asserted about time.
const WAIT = { timeout: 60_000 };

const problems = [];
let profile;
let context;
let page;

const day = (offset) => new Date(Date.now() + offset * 86_400_000).toISOString().slice(0, 10);
const FROM = day(-29);
const TO = day(0);
const digits = (text) => Number(text.replace(/[^0-9-]/g, ""));

async function api(path, headers = {}) {
  const response = await fetch(`${ORIGIN}/api/v1${path}`, { headers });
  return { status: response.status, body: await response.json() };
}

async function shoot(name) {
  for (const width of [1280, 390]) {
    await page.setViewportSize({ width, height: 900 });
    await page.waitForTimeout(300); // let the charts redraw at the new width
    await page.screenshot({ path: join(SHOTS, `${LABEL}-${name}-${width}.png`), fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 900 });
}

async function useKey(kind, key) {
  await page.selectOption("#key-kind", kind);
  await page.fill("#key", key);
  await page.click("#key-form button[type=submit]");
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  profile = mkdtempSync(join(tmpdir(), "pga-chromium-"));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
    viewport: { width: 1280, height: 900 },
  });
  context.on("request", (request) => {
    const url = new URL(request.url());
    if (["http:", "https:", "ws:", "wss:"].includes(url.protocol) && url.origin !== ORIGIN) {
      problems.push(`a request to another host: ${request.url()}`);
    }
  });
  page = context.pages()[0] || (await context.newPage());
  page.on("console", (message) => {
    if (message.type() === "error") {
      const text = message.text();
      // A failed API call the test provokes on purpose (401) is logged by Chromium as a
      // failed resource load; the page shows the API's message instead, which is checked.
      if (!/status of 401/.test(text)) problems.push(`console error: ${text} (${message.location().url})`);
    }
  });
  page.on("pageerror", (error) => problems.push(`uncaught: ${error.message}`));
});

after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

test("the overview shows the API's totals, series and top paths", async () => {
  await page.goto(`${BASE}/#/overview?from=${FROM}&to=${TO}&window=day`);
  const stats = (await api(`/stats?date=${FROM}&date_to=${TO}&limit=10`)).body.data;
  const events = page.locator("[data-testid=total-events]");
  await events.waitFor(WAIT);
  assert.equal(digits(await events.textContent()), stats.total_views);
  assert.equal(digits(await page.locator("[data-testid=unique-users]").textContent()), stats.unique_users);
  await page.locator(".chart canvas").first().waitFor(WAIT);
  const traffic = (await api(`/reports/traffic/run?window=day&date_from=${FROM}&date_to=${TO}&group_by=period&limit=100`)).body.data;
  assert.ok(traffic.rows.length > 0, "the demo data has traffic in the last 30 days");
  const paths = page.locator("section", { hasText: "Top paths" }).locator("tbody tr");
  await paths.first().waitFor(WAIT);
  assert.equal(await paths.count(), stats.top_paths.length);
  const first = await paths.first().locator("td").allTextContents();
  assert.equal(first[0], stats.top_paths[0].path);
  assert.equal(digits(first[1]), stats.top_paths[0].views);
  assert.match(await page.locator(".freshness").first().textContent(), /updated/);
  await shoot("overview");
});

test("changing window, range and a filter redraws with the API's numbers, and the URL round-trips", async () => {
  await page.goto(`${BASE}/#/reports?report=events-by-name`);
  await page.locator("form.controls select[name=window]").waitFor(WAIT);
  const from = day(-60);
  await page.fill("form.controls input[name=from]", from);
  await page.fill("form.controls input[name=to]", TO);
  await page.selectOption("form.controls select[name=window]", "week");
  await page.click("form.controls >> text=Apply");
  await page.waitForURL(/window=week/, WAIT);
  // Group by event name alone, channel web only.
  await page.locator("input[name=group][value=period]").uncheck();
  await page.locator("input[name=group][value=channel]").uncheck();
  await page.fill("input[name='f.channel']", "web");
  await page.click("text=Run");
  await page.waitForURL(/f\.channel=web/, WAIT);
  const url = page.url();
  assert.match(url, new RegExp(`from=${from}`));
  assert.match(url, /group_by=event_name/);

  const expected = (await api(`/reports/events-by-name/run?window=week&date_from=${from}&date_to=${TO}&group_by=event_name&channel=web&limit=100`)).body.data.rows;
  assert.ok(expected.length > 0, "the demo data has web events");
  const read = async () => {
    const rows = page.locator("table tbody tr");
    await rows.first().waitFor(WAIT);
    return (await rows.evaluateAll((trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent))));
  };
  const shown = await read();
  assert.deepEqual(
    shown.map(([name, events]) => [name, digits(events)]),
    expected.map((row) => [row.event_name, row.events]),
  );
  await page.locator(".bars .bar").first().waitFor(WAIT);
  await shoot("report");

  // The same URL in a fresh load shows the same view.
  await page.goto("about:blank");
  await page.goto(url);
  assert.deepEqual(await read(), shown);
  assert.equal(await page.inputValue("input[name='f.channel']"), "web");
  assert.equal(await page.inputValue("form.controls select[name=window]"), "week");
});

test("a report with no data shows an empty state, not an empty chart", async () => {
  await page.goto(`${BASE}/#/reports?report=volume-by-period&f.source=no-such-source&from=${FROM}&to=${TO}`);
  await page.locator("text=No data for this range.").waitFor(WAIT);
  assert.equal(await page.locator(".chart canvas").count(), 0);
});

test("with the management key, a recompute is triggered and watched to completed", async () => {
  await page.goto(`${BASE}/#/operations`);
  await useKey("management", KEY);
  await page.locator("text=Recompute").first().waitFor(WAIT);
  await page.fill("input[name=report]", "traffic");
  await page.selectOption("select[name=window]", "day");
  await page.fill("input[name=from]", day(-6));
  await page.fill("input[name=to]", TO);
  await page.selectOption("select[name=mode]", "full");
  await page.click("button:text-is('Recompute')");
  const queued = page.locator("p.ok");
  await queued.waitFor(WAIT);
  const id = (await queued.textContent()).match(/Run ([0-9a-f-]{36}) queued/)[1];
  await page.locator(`tr[data-run-id="${id}"][data-status="completed"]`).waitFor(WAIT);
  const run = (await api(`/recomputations/${id}`, { "X-Management-Key": KEY })).body.data;
  assert.equal(run.status, "completed");
  await page.click(`tr[data-run-id="${id}"]`);
  await page.locator("pre.summary").waitFor(WAIT);
  assert.match(await page.locator("pre.summary").textContent(), new RegExp(id));
  await page.locator("section", { hasText: "Audit trail" }).locator("tbody tr").first().waitFor(WAIT);
  await shoot("operations");
});

test("a wrong key shows the API's 401 message", async () => {
  const wrong = "pga_0000000000000000000000000000000000000000";
  const expected = (await api(`/stats?date=${FROM}&date_to=${TO}&limit=10`, { "X-API-Key": wrong })).body;
  await useKey("api", wrong);
  await page.goto(`${BASE}/#/overview?from=${FROM}&to=${TO}`);
  const alert = page.locator("[role=alert]").first();
  await alert.waitFor(WAIT);
  assert.equal(await alert.textContent(), expected.error.message);
  await page.click("#key-clear");
  await page.locator("[data-testid=total-events]").waitFor(WAIT);
});

test("the API explorer renders the API's document", async () => {
  await page.goto(`${BASE}/api/v1/docs`);
  await page.locator(".opblock").first().waitFor(WAIT);
  assert.ok((await page.locator(".opblock").count()) > 10);
  await page.locator("button.authorize").waitFor(WAIT);
  await shoot("docs");
});

test("no page logged an error or called another host", () => {
  assert.deepEqual(problems, []);
});
