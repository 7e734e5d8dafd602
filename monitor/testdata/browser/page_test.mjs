// Loads a running pipeline's status page in headless Chromium and checks
// it as a person would see it. Run by TestStatusPageChromium:
//
//   node page_test.mjs URL TOKEN SCREENSHOT STAGE... -- FAILING
//
// It exits 0 when the page loads, the graph shows every STAGE, the counts
// move while the pipeline runs and the FAILING stage shows its error; it
// saves a screenshot either way.
import { chromium } from "playwright-core";

const args = process.argv.slice(2);
const [url, token, shot] = args;
const sep = args.indexOf("--");
const stages = args.slice(3, sep);
const failing = args[sep + 1];

const browser = await chromium.launch({
  executablePath: process.env.PIPE_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
let failed = false;
const fail = (msg) => { console.error("FAIL: " + msg); failed = true; };
const page = await browser.newPage({ viewport: { width: 1400, height: 800 } });
page.on("pageerror", (e) => fail("script error on the page: " + e.message));
try {
  await page.goto(url + "/#token=" + encodeURIComponent(token), { waitUntil: "load" });
  for (const s of stages) {
    await page.waitForSelector(`svg #stage-${s}`, { timeout: 15000 });
  }
  const shown = await page.$$eval("svg g.stage", (gs) => gs.map((g) => g.id.slice("stage-".length)));
  if (shown.length !== stages.length) fail(`the graph shows ${shown.join(", ")}; want ${stages.join(", ")}`);
  if (await page.locator("#state").textContent() !== "running") {
    await page.waitForFunction(() => document.getElementById("state").textContent === "running", null, { timeout: 15000 });
  }
  const last = stages[stages.length - 1];
  const count = async () => Number(await page.locator(`#row-${last} td.received`).textContent());
  await page.waitForFunction((s) => {
    const td = document.querySelector(`#row-${s} td.received`);
    return td && Number(td.textContent) > 0;
  }, last, { timeout: 15000 });
  const before = await count();
  await page.waitForTimeout(2500);
  const after = await count();
  if (!(after > before)) fail(`stage ${last} received ${before}, then ${after} 2.5s later: the counts do not move`);
  const stat = await page.locator(`#stat-${last}`).textContent();
  if (!stat.startsWith("in ")) fail(`the graph's stage ${last} shows ${JSON.stringify(stat)}, not its counts`);
  await page.waitForSelector(`#row-${failing}.failing`, { timeout: 15000 });
  const err = await page.locator(`#row-${failing} td.error`).textContent();
  if (!err.includes("to_int")) fail(`stage ${failing} shows the error ${JSON.stringify(err)}`);
  if (!(await page.$(`svg #stage-${failing}.failing`))) fail(`the graph does not mark stage ${failing} as failing`);
  const age = await page.locator(`#row-${last} td.checkpoint-age`).textContent();
  if (!/^\d+\.\ds$/.test(age)) fail(`stage ${last} shows the checkpoint age ${JSON.stringify(age)}`);
  const health = await page.locator("#health").textContent();
  if (health !== "health ok") fail(`the header shows ${JSON.stringify(health)}`);
  console.log(`ok: ${stages.length} stages drawn, ${last} received ${before} then ${after}, ${failing}: ${err}`);
} catch (e) {
  fail(String(e));
} finally {
  await page.screenshot({ path: shot, fullPage: true });
  await browser.close();
}
process.exit(failed ? 1 : 0);
