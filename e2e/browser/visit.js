// Drives Debian's Chromium (playwright-core, never a downloaded browser) through the
// maintproxy PAC file or Chrome extension and reports what a user would see, as JSON on
// stdout. Assertions live in e2e/browser_test.go.
//
// Usage: node visit.js JOB.json      (HOME must hold an NSS db trusting the test CA)
// JOB: {
//   mode: "pac" | "extension", pacURL, extensionDir, profileDir, resolverRules,
//   extraArgs: [...] (e.g. a proxy already in force), chromium: "/usr/bin/chromium", timeoutMs,
//   visits: [{ name, url, proxyAuth: {username, password}, serverAuth: {username, password},
//              screenshot: "file.png", measure: bool,
//              actions: [{type: "fill"|"select", selector, value} | {type: "waitText", selector, text}
//                        | {type: "count", selector, name} | {type: "click", selector}
//                        | {type: "screenshot", value: "file.png", selector (optional: that element only)}],
//              copy: ["copy-id", ...], uninstallExtension: bool (extension mode: remove it first) }]
// }
// Result: { extension: {worker, setting}, visits: [{ name, status, text, error, url,
//           challenges: [{source, scheme, realm}], copies: {id: text}, counts: {name: n},
//           textAfter, timing: {...} }] }
'use strict';
const fs = require('fs');
const { chromium } = require('playwright-core');

const job = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const timeout = job.timeoutMs || 15000;
const maxChallenges = 3; // a wrong password would otherwise loop forever

function baseArgs() {
  return ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-default-apps', '--host-resolver-rules=' + job.resolverRules];
}

// until polls cond (async) every 50 ms until it returns a truthy value or the deadline passes.
async function until(what, cond, ms) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await cond().catch(() => null);
    if (v) return v;
    if (Date.now() > deadline) throw new Error('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// answerAuth answers proxy and server auth challenges over the DevTools protocol, as a user
// typing into the browser's login prompt would; it records every challenge.
async function answerAuth(ctx, page, visit, challenges) {
  const cdp = await ctx.newCDPSession(page);
  const counts = { Proxy: 0, Server: 0 };
  cdp.on('Fetch.requestPaused', (e) => cdp.send('Fetch.continueRequest', { requestId: e.requestId }).catch(() => {}));
  cdp.on('Fetch.authRequired', (e) => {
    const c = e.authChallenge;
    challenges.push({ source: c.source, scheme: c.scheme, realm: c.realm });
    const creds = c.source === 'Proxy' ? visit.proxyAuth : visit.serverAuth;
    counts[c.source] = (counts[c.source] || 0) + 1;
    const response = creds && counts[c.source] <= maxChallenges
      ? { response: 'ProvideCredentials', username: creds.username, password: creds.password }
      : { response: 'CancelAuth' };
    cdp.send('Fetch.continueWithAuth', { requestId: e.requestId, authChallengeResponse: response }).catch(() => {});
  });
  await cdp.send('Fetch.enable', { handleAuthRequests: true, patterns: [{ urlPattern: '*' }] });
}

async function copyButtons(ctx, page, visit, result) {
  const origin = new URL(visit.url).origin;
  await ctx.grantPermissions(['clipboard-read', 'clipboard-write'], { origin });
  result.copies = {};
  for (const id of visit.copy || []) {
    const button = page.locator(`button[data-copy="${id}"]`);
    await page.evaluate(() => navigator.clipboard.writeText(''));
    await button.click({ timeout });
    await until('copy button ' + id, async () => /Copied|Failed/.test(await button.textContent()), timeout);
    result.copies[id] = (await button.textContent()) === 'Copied'
      ? await page.evaluate(() => navigator.clipboard.readText())
      : 'COPY FAILED';
  }
}

// actions runs a visit's steps on the loaded page, as a user would (typing, choosing), and
// records counts of visible elements and the time each step took to show.
async function actions(page, v, result) {
  result.counts = {};
  for (const a of v.actions || []) {
    const started = Date.now();
    if (a.type === 'fill') await page.fill(a.selector, a.value, { timeout });
    else if (a.type === 'select') await page.selectOption(a.selector, a.value, { timeout });
    else if (a.type === 'click') await page.click(a.selector, { timeout });
    else if (a.type === 'screenshot') {
      if (a.selector) await page.locator(a.selector).first().screenshot({ path: a.value, timeout });
      else await page.screenshot({ path: a.value, fullPage: true });
    }
    else if (a.type === 'waitText') {
      await until('text ' + a.text + ' in ' + a.selector, async () =>
        (await page.locator(a.selector).first().textContent()).includes(a.text), timeout);
      result.counts['ms:' + a.text] = Date.now() - started;
    } else if (a.type === 'count') {
      result.counts[a.name] = await page.evaluate((sel) =>
        Array.from(document.querySelectorAll(sel)).filter((el) => el.offsetParent !== null).length, a.selector);
    }
  }
  result.textAfter = await page.evaluate(() => document.body ? document.body.innerText : '');
}

async function visit(ctx, page, v) {
  const result = { name: v.name, challenges: [] };
  await answerAuth(ctx, page, v, result.challenges);
  try {
    const resp = await page.goto(v.url, { timeout, waitUntil: 'load' });
    result.status = resp ? resp.status() : 0;
    result.url = page.url();
    result.text = await page.evaluate(() => document.body ? document.body.innerText : '');
    if (v.measure) {
      // The browser's own account of the page: fetching, parsing, rendering.
      result.timing = await page.evaluate(() => {
        const n = performance.getEntriesByType('navigation')[0];
        const t0 = performance.now();
        document.body.getBoundingClientRect(); // a forced layout: the page is rendered
        return { responseStart: n.responseStart, responseEnd: n.responseEnd, domInteractive: n.domInteractive, domContentLoaded: n.domContentLoadedEventEnd,
          load: n.loadEventEnd, layout: performance.now() - t0, decodedBodySize: n.decodedBodySize, transferSize: n.transferSize };
      });
    }
    if (v.screenshot) await page.screenshot({ path: v.screenshot, fullPage: true });
    if (v.actions) await actions(page, v, result);
    if (v.copy) await copyButtons(ctx, page, v, result);
  } catch (e) {
    result.error = String(e.message).split('\n')[0];
  }
  return result;
}

async function runPAC() {
  const browser = await chromium.launch({ executablePath: job.chromium, headless: true,
    args: [...baseArgs(), '--proxy-pac-url=' + job.pacURL, ...(job.extraArgs || [])] });
  const out = { visits: [] };
  try {
    for (const v of job.visits) {
      // A fresh context per visit: its own proxy and server auth caches.
      const ctx = await browser.newContext({ viewport: { width: 1366, height: 768 } });
      out.visits.push(await visit(ctx, await ctx.newPage(), v));
      await ctx.close();
    }
  } finally {
    await browser.close();
  }
  return out;
}

async function runExtension() {
  const ext = job.extensionDir;
  const ctx = await chromium.launchPersistentContext(job.profileDir, { executablePath: job.chromium, headless: false,
    args: [...baseArgs(), '--headless=new', '--disable-features=DisableLoadExtensionCommandLineSwitch',
      '--load-extension=' + ext, '--disable-extensions-except=' + ext, ...(job.extraArgs || [])],
    ignoreDefaultArgs: ['--disable-extensions'], viewport: { width: 1366, height: 768 } });
  const out = { visits: [], extension: {} };
  try {
    const worker = ctx.serviceWorkers()[0] || await ctx.waitForEvent('serviceworker', { timeout });
    out.extension.worker = worker.url();
    // Navigating before the extension's setting is in force would go direct: wait for it.
    out.extension.setting = await until('the extension proxy setting', async () => {
      const s = await worker.evaluate(() => new Promise((r) => chrome.proxy.settings.get({}, r)));
      return s && s.levelOfControl === 'controlled_by_this_extension' && s.value.mode === 'pac_script' ? s : null;
    }, timeout);
    for (const v of job.visits) {
      if (v.uninstallExtension) await uninstall(worker);
      const page = await ctx.newPage();
      out.visits.push(await visit(ctx, page, v));
      await page.close();
    }
  } finally {
    await ctx.close();
  }
  return out;
}

// uninstall removes the extension as a user would, from itself, and waits until its worker
// has gone (the browser drops the extension's proxy setting with it).
async function uninstall(worker) {
  const closed = new Promise((r) => worker.once('close', r));
  worker.evaluate(() => chrome.management.uninstallSelf({ showConfirmDialog: false })).catch(() => {});
  await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error('extension not removed')), timeout))]);
}

(job.mode === 'extension' ? runExtension() : runPAC())
  .then((out) => { process.stdout.write(JSON.stringify(out)); })
  .catch((e) => { console.error(e); process.exit(1); });
