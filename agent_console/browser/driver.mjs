// Drives Debian's headless chromium with playwright-core for the console's browser tests.
//
// The test (tests/test_console_browser.py) starts `node driver.mjs` and writes one JSON
// command per line on its stdin; each gets one JSON line back on stdout: {"ok": true,
// "value": ...} or {"ok": false, "error": "..."}. Each command names a page ("page": "agent");
// a page is opened on first use in its own browser context (its own cookies), so two people
// can be signed in at once. No browser is downloaded: CHROMIUM (default /usr/bin/chromium).
//
// Commands: goto {url} · fill {sel, value} · select {sel, value} · click {sel} ·
// wait {sel, state?: visible|attached|hidden} · waitFor {js, arg?} (a function body, polled
// until truthy) · text {sel} · attr {sel, name} · eval {js, arg?} · screenshot {path, fullPage?} ·
// console {} (the page's console messages so far) · quit {}.
import { chromium } from "playwright-core";
import readline from "node:readline";

const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const timeout = Number(process.env.DRIVER_TIMEOUT_MS || 10000);
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--autoplay-policy=no-user-gesture-required", "--disable-gpu", "--mute-audio"],
});
const pages = new Map();
const logs = new Map();

async function page(name, locale) {
  if (!pages.has(name)) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: locale || "en-US" });
    const p = await context.newPage();
    p.setDefaultTimeout(timeout);
    logs.set(name, []);
    p.on("console", (m) => logs.get(name).push(`${m.type()}: ${m.text()}`));
    p.on("pageerror", (e) => logs.get(name).push(`pageerror: ${e.message}`));
    pages.set(name, p);
  }
  return pages.get(name);
}

async function run(c) {
  const p = await page(c.page || "main", c.locale);
  switch (c.op) {
    case "goto": { const r = await p.goto(c.url, { waitUntil: "load" }); return r ? r.status() : null; }
    case "fill": await p.fill(c.sel, c.value); return null;
    case "select": await p.selectOption(c.sel, c.value); return null;
    case "click": await p.click(c.sel); return null;
    case "press": await p.keyboard.press(c.key); return null;
    case "wait": await p.waitForSelector(c.sel, { state: c.state || "visible" }); return null;
    case "waitFor": {
      const fn = new Function("arg", c.js);
      await p.waitForFunction(fn, c.arg ?? null, { timeout: c.timeout || timeout, polling: 100 });
      return null;
    }
    case "text": return (await p.textContent(c.sel))?.trim() ?? null;
    case "attr": return await p.getAttribute(c.sel, c.name);
    case "eval": return await p.evaluate(new Function("arg", c.js), c.arg ?? null);
    case "url": return p.url();
    case "screenshot": await p.screenshot({ path: c.path, fullPage: !!c.fullPage }); return c.path;
    case "console": return logs.get(c.page || "main");
    default: throw new Error(`unknown command ${c.op}`);
  }
}

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const command = JSON.parse(line);
  if (command.op === "quit") break;
  let reply;
  try {
    reply = { ok: true, value: await run(command) };
  } catch (error) {
    reply = { ok: false, error: String(error && error.message || error).slice(0, 2000) };
  }
  process.stdout.write(JSON.stringify(reply) + "\n");
}
await browser.close();
process.stdout.write(JSON.stringify({ ok: true, value: "bye" }) + "\n");
