// Opens a player page (tests/browser/player.html, served on its own origin) in headless
// Chromium and waits until its <video> has played at least ADVANCE seconds of acemux's
// HLS, past the time at which it first started playing.
//
//   node play.mjs <page URL with ?src=<manifest URL>> <screenshot.png>
//
// Prints one JSON line with what it saw (`reason` says what went wrong) and exits 0
// when playback advanced, 1 when it did not within WAIT_MS or the browser could not be
// run, 2 on bad arguments.
// Used by tests/tests/browser_hls.rs; scripts/test.sh installs what it needs.

import { launchChromium } from './chromium.mjs';
/** Seconds of playback to see, past the first playing position. */
const ADVANCE = 3;
/** Bound on the wait for that, from the page's load. */
const WAIT_MS = 40_000;
const SAMPLE_EVERY_MS = 250;

const [pageUrl, screenshot] = process.argv.slice(2);
if (!pageUrl || !screenshot) {
  console.error('usage: node play.mjs <page URL> <screenshot.png>');
  process.exit(2);
}

const started = Date.now();
const result = {
  ok: false,
  reason: null,
  pageUrl,
  pageOrigin: new URL(pageUrl).origin,
  mediaOrigin: null,
  crossOrigin: false,
  browserVersion: null,
  hlsVersion: null,
  mseAvc: null,
  mseAac: null,
  levelCodecs: null,
  firstPlaying: null,
  advanced: 0,
  // Video frames the page decoded (the last sample's).
  framesDecoded: 0,
  samples: [],
  hlsErrors: [],
  fatal: null,
  playError: null,
  consoleErrors: [],
  pageErrors: [],
  failedRequests: [],
  // Answers with a 4xx or 5xx status, as `<status> <url>`.
  badAnswers: [],
  // Requests the page made to the media origin, and how many answers to them carried
  // Access-Control-Allow-Origin.
  mediaRequests: 0,
  mediaAnswersWithCors: 0,
  screenshot,
  elapsedMs: 0,
};

let browser;
try {
  const src = new URL(pageUrl).searchParams.get('src');
  if (!src) throw new Error(`no ?src= in ${pageUrl}`);
  result.mediaOrigin = new URL(src).origin;
  result.crossOrigin = result.mediaOrigin !== result.pageOrigin;

  browser = await launchChromium(['--autoplay-policy=no-user-gesture-required']);
  result.browserVersion = await browser.version();
  const page = await browser.newPage();
  await page.setViewport({ width: 680, height: 420 });
  page.on('console', (message) => {
    if (message.type() === 'error') result.consoleErrors.push(message.text());
  });
  page.on('pageerror', (error) => result.pageErrors.push(String(error)));
  page.on('requestfailed', (request) => {
    result.failedRequests.push(`${request.url()}: ${request.failure()?.errorText}`);
  });
  page.on('request', (request) => {
    if (new URL(request.url()).origin === result.mediaOrigin) result.mediaRequests += 1;
  });
  page.on('response', (response) => {
    if (response.status() >= 400) result.badAnswers.push(`${response.status()} ${response.url()}`);
    if (
      new URL(response.url()).origin === result.mediaOrigin &&
      response.headers()['access-control-allow-origin'] !== undefined
    ) {
      result.mediaAnswersWithCors += 1;
    }
  });

  await page.goto(pageUrl, { waitUntil: 'load', timeout: 15_000 });
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const state = await page.evaluate(() => {
      const video = document.getElementById('video');
      const player = window.acemuxPlayer || {};
      const quality = video.getVideoPlaybackQuality();
      return {
        currentTime: video.currentTime,
        paused: video.paused,
        readyState: video.readyState,
        frames: quality.totalVideoFrames,
        firstPlaying: player.firstPlaying ?? null,
        fatal: player.fatal ?? null,
        errors: player.errors ?? [],
        playError: player.playError ?? null,
        hlsVersion: player.hlsVersion ?? null,
        mseAvc: player.mseAvc ?? null,
        mseAac: player.mseAac ?? null,
        levelCodecs: player.levelCodecs ?? null,
      };
    });
    result.samples.push({
      ms: Date.now() - started,
      t: Number(state.currentTime.toFixed(3)),
      paused: state.paused,
      readyState: state.readyState,
      frames: state.frames,
    });
    Object.assign(result, {
      framesDecoded: state.frames,
      hlsVersion: state.hlsVersion,
      mseAvc: state.mseAvc,
      mseAac: state.mseAac,
      levelCodecs: state.levelCodecs,
      firstPlaying: state.firstPlaying,
      hlsErrors: state.errors,
      fatal: state.fatal,
      playError: state.playError,
    });
    if (state.firstPlaying !== null) {
      result.advanced = Number((state.currentTime - state.firstPlaying).toFixed(3));
    }
    if (state.fatal) {
      result.reason = `fatal hls.js error: ${state.fatal.type} ${state.fatal.details}`;
      break;
    }
    if (result.advanced >= ADVANCE) {
      result.ok = true;
      break;
    }
    if (Date.now() >= deadline) {
      result.reason = `playback advanced ${result.advanced} s (< ${ADVANCE} s) within ${WAIT_MS / 1000} s`;
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, SAMPLE_EVERY_MS));
  }
  await page.screenshot({ path: screenshot });
} catch (error) {
  result.ok = false;
  result.reason = `driver: ${error && error.stack ? error.stack : error}`;
} finally {
  if (browser) await browser.close();
}
result.elapsedMs = Date.now() - started;
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
