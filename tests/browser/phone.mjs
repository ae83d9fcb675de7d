// Drives the web phone (GET /phone) in Debian's Chromium, as a person would: signs in with
// a user token, calls TARGET (or, with MODE=answer, waits to be rung and answers, then waits
// for the call to end), and once connected presses KEYS on the keypad; the fake microphone
// plays MIC_WAV. Prints one JSON line per step; the last is what the page heard.
//   RINGSIDE=http://127.0.0.1:8480 TOKEN=… TARGET=<app id> KEYS=12# MIC_WAV=… SECONDS=8 \
//   [SCREENSHOT=out.png] node phone.mjs
import { chromium } from "playwright-core";

const env = process.env;
const say = (v) => console.log(JSON.stringify(v));
const browser = await chromium.launch({
  executablePath: env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    ...(env.MIC_WAV ? [`--use-file-for-fake-audio-capture=${env.MIC_WAV}`] : []),
    "--autoplay-policy=no-user-gesture-required",
  ],
});
try {
  const page = await browser.newPage();
  const q = new URLSearchParams({ token: env.TOKEN, target: env.TARGET });
  await page.goto(`${env.RINGSIDE}/phone?${q}`);
  await page.waitForFunction(() => (window.phone.status || "").startsWith("signed in"), null, { timeout: 10000 });
  if (env.MODE === "answer") {
    // Wait to be rung, then answer as a person would.
    say({ step: "signed-in" });
    await page.waitForFunction(() => window.phone.status === "ringing", null, { timeout: 20000 });
    say({ step: "ringing", from: await page.textContent("#from") });
    await page.click("#answer");
  } else {
    await page.click("#call");
  }
  await page.waitForFunction(() => window.phone.status === "in a call", null, { timeout: 15000 });
  say({ step: "connected", leg: await page.evaluate(() => window.phone.leg) });
  await page.waitForTimeout(1000);
  for (const k of env.KEYS || "") {
    await page.click(`#keypad button:text-is("${k}")`);
    await page.waitForTimeout(300);
  }
  if (env.MUTE_AFTER) {
    await page.waitForTimeout(Number(env.MUTE_AFTER) * 1000);
    await page.click("#mute");
    say({ step: "muted" });
  }
  if (env.MODE === "answer") {
    await page.waitForFunction(() => (window.phone.status || "").startsWith("call ended"), null, { timeout: 30000 });
  } else {
    await page.waitForTimeout(Number(env.SECONDS || 6) * 1000);
  }
  if (env.SCREENSHOT) await page.screenshot({ path: env.SCREENSHOT, fullPage: true });
  say({ step: "heard", ...(await page.evaluate(() => ({
    status: window.phone.status, heard: window.phone.heard, peaks: window.phone.peaks, keys: window.phone.keysSent,
  }))) });
} finally {
  await browser.close();
}
