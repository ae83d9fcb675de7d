// Drives the console (GET /console) in Debian's Chromium as an operator would: signs in with
// the admin token and reports, one JSON line each, every notification the page shows as
// delivered (with the moment it appeared) and every dead letter it lists. Commands on stdin:
//   redeliver <seq>   click that dead letter's Redeliver button
//   select <call>     open a call's page (roster, operations, notifications)
//   tenant <name>     add a tenant with the directory form
//   play              play the newest finished recording in the page
//   shot <path>       screenshot the page
//   quit
//   RINGSIDE=http://127.0.0.1:8480 ADMIN=… node console.mjs
import { chromium } from "playwright-core";
import readline from "node:readline";

const env = process.env;
const say = (v) => console.log(JSON.stringify(v));
const browser = await chromium.launch({
  executablePath: env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
  ],
});
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
page.on("dialog", (d) => d.accept());
page.on("pageerror", (e) => say({ step: "page-error", error: String(e) }));
await page.goto(`${env.RINGSIDE}/console`);
await page.fill("#token", env.ADMIN);
await page.click("#signin");
await page.waitForFunction(() => window.consoleState.connected, null, { timeout: 10000 });
say({ step: "live" });

// What the page shows, reported as it changes.
const told = new Set();
let watching = true;
const watch = (async () => {
  while (watching) {
    const seen = await page.evaluate(() => {
      const cs = window.consoleState;
      const shown = Object.entries(cs.shownAt).map(([seq, at]) => {
        const n = cs.notes.get(Number(seq));
        return { seq: Number(seq), at, callId: n && n.callId, body: n && n.body, attempts: n && n.attempts.length };
      });
      const dead = [...document.querySelectorAll("#deadRows tr[data-seq]")].map((tr) => Number(tr.dataset.seq));
      return { shown, dead };
    });
    for (const s of seen.shown) {
      const key = `shown-${s.seq}-${s.at}`;
      if (!told.has(key)) { told.add(key); say({ step: "shown", ...s }); }
    }
    for (const seq of seen.dead) {
      if (!told.has(`dead-${seq}`)) { told.add(`dead-${seq}`); say({ step: "dead", seq }); }
    }
    await page.waitForTimeout(50);
  }
})();

const tab = (name) => page.click(`nav button[data-tab="${name}"]`);
const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  const [cmd, arg] = line.trim().split(/\s+/, 2);
  if (cmd === "redeliver") {
    await tab("dead");
    // A redelivered letter is shown again as soon as it is delivered.
    await page.evaluate((seq) => { delete window.consoleState.shownAt[seq]; }, Number(arg));
    await page.click(`#deadRows button.redeliver[data-seq="${arg}"]`);
    say({ step: "clicked", seq: Number(arg) });
  } else if (cmd === "select") {
    await tab("calls");
    await page.click(`#callRows tr[data-call="${arg}"]`);
    await page.waitForSelector("#noteTable tbody tr");
    say({ step: "selected", call: arg, rows: await page.locator("#noteTable tbody tr[data-seq]").count() });
  } else if (cmd === "tenant") {
    await tab("directory");
    await page.fill("#addTenant input[name=name]", arg);
    await page.click("#addTenant button");
    await page.waitForFunction((n) => [...document.querySelectorAll("#tenantRows td")].some((td) => td.textContent === n), arg, { timeout: 10000 });
    say({ step: "tenant", name: arg });
  } else if (cmd === "play") {
    await tab("recordings");
    await page.click("#recRows button.play");
    await page.waitForFunction(() => $("player").duration > 0 && !$("player").paused, null, { timeout: 10000 });
    say({ step: "playing", seconds: await page.evaluate(() => $("player").duration) });
  } else if (cmd === "shot") {
    await page.screenshot({ path: arg, fullPage: false });
    say({ step: "shot", path: arg });
  } else if (cmd === "quit") {
    break;
  }
}
lines.close();
watching = false;
await watch;
await browser.close();
process.exit(0);
