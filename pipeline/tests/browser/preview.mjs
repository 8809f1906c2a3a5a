// Loads eyetrack's preview page in Debian's headless chromium (playwright-core drives it; no
// browser download), checks that frames move and the status shows, then records with the
// page's Start and Stop buttons. Prints one JSON line for pipeline/tests/browser.rs to check.
// Usage: node preview.mjs BASE_URL WORK_DIR
import { chromium } from "playwright-core";
import { join } from "node:path";

const [base, work] = process.argv.slice(2);
const context = await chromium.launchPersistentContext(join(work, "chromium-profile"), {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
  viewport: { width: 1100, height: 600 },
});
const result = {};
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(20000);
  await page.goto(base + "/");
  // The status is polled and shown.
  await page.waitForFunction(() => document.getElementById("s-state").textContent === "running");
  result.state = await page.textContent("#s-state");
  result.device = await page.textContent("#s-device");
  // Frames move: the <img> shows the MJPEG stream; two pictures of it, apart in time, differ.
  await page.waitForFunction(() => document.getElementById("preview").naturalWidth > 0);
  const img = page.locator("#preview");
  const a = await img.screenshot();
  await page.waitForTimeout(700);
  const b = await img.screenshot();
  result.frames_differ = !a.equals(b);
  result.preview_width = await img.evaluate((e) => e.naturalWidth);
  await page.screenshot({ path: join(work, "page.png") });
  // Start and Stop buttons make a recording.
  await page.click("#start");
  await page.waitForFunction(() =>
    document.getElementById("rec").textContent.startsWith("recording into "));
  result.folder = (await page.textContent("#rec")).slice("recording into ".length);
  await page.waitForFunction(() => Number(document.getElementById("s-frames").textContent) > 3);
  await page.click("#stop");
  await page.waitForFunction(() => document.getElementById("rec").textContent === "not recording");
  result.message = await page.textContent("#message");
} catch (e) {
  result.error = String(e);
} finally {
  await context.close();
}
console.log(JSON.stringify(result));
