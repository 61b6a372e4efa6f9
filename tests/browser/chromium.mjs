// Debian's chromium, headless, as the browser tests run it: a fresh profile per run,
// and no background networking (this machine's network is closed to everything but
// loopback; Chromium's own connections would only fail, many at a time).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer from 'puppeteer-core';

/** Debian's chromium package (scripts/test.sh installs it). */
export const CHROMIUM = '/usr/bin/chromium';

/**
 * Launches the browser; `close()` on the result also removes its profile.
 * `extraArgs` are added to the command line.
 */
export async function launchChromium(extraArgs = []) {
  const userDataDir = mkdtempSync(join(tmpdir(), 'acemux-chromium-'));
  try {
    const browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless=new',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        `--user-data-dir=${userDataDir}`,
        ...extraArgs,
      ],
      timeout: 30_000,
    });
    const close = browser.close.bind(browser);
    browser.close = async () => {
      await close().catch(() => {});
      rmSync(userDataDir, { recursive: true, force: true });
    };
    return browser;
  } catch (error) {
    rmSync(userDataDir, { recursive: true, force: true });
    throw error;
  }
}
