// Opens acemux's status page in headless Chromium, as an operator would: reads what it
// shows (channels, viewer counts, engines), gives the API key in its form, reads the
// viewer lists that then appear, stops one channel with its button and waits until the
// page no longer lists it.
//
//   node status.mjs <page URL> <API key> <channel to stop> <screenshot.png>
//
// Prints one JSON line with what it saw (`reason` says what went wrong) and exits 0
// when every step worked, 1 otherwise, 2 on bad arguments.
// Used by tests/tests/status_page.rs; scripts/test.sh installs what it needs.

import { launchChromium } from './chromium.mjs';

/** Bound on each wait for the page to show something. */
const WAIT_MS = 20_000;

const [pageUrl, apiKey, toStop, screenshot] = process.argv.slice(2);
if (!pageUrl || !apiKey || !toStop || !screenshot) {
  console.error('usage: node status.mjs <page URL> <API key> <channel to stop> <screenshot.png>');
  process.exit(2);
}

const started = Date.now();
const result = {
  ok: false,
  reason: null,
  browserVersion: null,
  // What the page showed before the key: channel -> viewer count, and the engines.
  channels: {},
  engines: [],
  lockedBeforeKey: false,
  // After the key: the user agents of the listed viewers, by viewer table.
  viewerAgents: {},
  stopped: false,
  channelsAfterStop: [],
  consoleErrors: [],
  pageErrors: [],
  screenshot,
  elapsedMs: 0,
};

/** The page's channels and engines, as its DOM shows them. */
function read() {
  const channels = {};
  for (const row of document.querySelectorAll('#channels tbody tr')) {
    const name = row.querySelector('.channel')?.dataset.channel;
    if (name) channels[name] = Number(row.querySelector('.viewers')?.textContent);
  }
  const engines = [...document.querySelectorAll('#engines .engine')].map((cell) => cell.textContent);
  const agents = {};
  for (const table of document.querySelectorAll('table[id^="viewers-"]')) {
    agents[table.id] = [...table.querySelectorAll('tbody tr')].map((row) => row.cells[1].textContent);
  }
  return {
    channels,
    engines,
    agents,
    locked: document.getElementById('viewers-locked') !== null,
  };
}

async function until(page, what, check) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const seen = await page.evaluate(read);
    if (check(seen)) return seen;
    if (Date.now() >= deadline) {
      throw new Error(`${what} not shown within ${WAIT_MS / 1000} s; the page showed ${JSON.stringify(seen)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

let browser;
try {
  browser = await launchChromium();
  result.browserVersion = await browser.version();
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 900 });
  page.on('console', (message) => {
    if (message.type() === 'error') result.consoleErrors.push(message.text());
  });
  page.on('pageerror', (error) => result.pageErrors.push(String(error)));
  await page.goto(pageUrl, { waitUntil: 'load', timeout: 15_000 });

  const before = await until(page, 'two channels with viewers', (seen) =>
    Object.keys(seen.channels).length >= 2 && Object.values(seen.channels).every((n) => n > 0));
  result.channels = before.channels;
  result.engines = before.engines;
  result.lockedBeforeKey = before.locked;

  // The key, given once in the page's form; the viewer lists appear with the refresh.
  await page.type('#key', apiKey);
  await page.click('#key-form button[type="submit"]');
  const unlocked = await until(page, 'the viewer lists', (seen) => !seen.locked
    && Object.values(seen.agents).flat().length >= Object.values(seen.channels).reduce((a, b) => a + b, 0));
  result.viewerAgents = unlocked.agents;
  await page.screenshot({ path: screenshot, fullPage: true });

  // Stop one channel with its button.
  const button = await page.evaluateHandle((name) => {
    const row = [...document.querySelectorAll('#channels tbody tr')]
      .find((tr) => tr.querySelector('.channel')?.dataset.channel === name);
    return row?.querySelector('button.stop') ?? null;
  }, toStop);
  if (!(await button.evaluate((node) => node !== null))) throw new Error(`no stop button for ${toStop}`);
  await button.click();
  const after = await until(page, `${toStop} gone`, (seen) => !(toStop in seen.channels));
  result.stopped = true;
  result.channelsAfterStop = Object.keys(after.channels);
  result.ok = true;
} catch (error) {
  result.reason = `driver: ${error && error.stack ? error.stack : error}`;
} finally {
  if (browser) await browser.close();
}
result.elapsedMs = Date.now() - started;
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
