// Drives Debian's Chromium (playwright-core, never a downloaded browser) through the
// maintproxy PAC file or Chrome extension and reports what a user would see, as JSON on
// stdout. Assertions live in e2e/browser_test.go.
//
// Usage: node visit.js JOB.json      (HOME must hold an NSS db trusting the test CA)
// JOB: {
//   mode: "pac" | "extension", pacURL, extensionDir, profileDir, resolverRules,
//   chromium: "/usr/bin/chromium", timeoutMs,
//   visits: [{ name, url, proxyAuth: {username, password}, serverAuth: {username, password},
//              screenshot: "file.png", copy: ["copy-id", ...] }]
// }
// Result: { extension: {worker, setting}, visits: [{ name, status, text, error, url,
//           challenges: [{source, scheme, realm}], copies: {id: text} }] }
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

async function visit(ctx, page, v) {
  const result = { name: v.name, challenges: [] };
  await answerAuth(ctx, page, v, result.challenges);
  try {
    const resp = await page.goto(v.url, { timeout, waitUntil: 'load' });
    result.status = resp ? resp.status() : 0;
    result.url = page.url();
    result.text = await page.evaluate(() => document.body ? document.body.innerText : '');
    if (v.screenshot) await page.screenshot({ path: v.screenshot, fullPage: true });
    if (v.copy) await copyButtons(ctx, page, v, result);
  } catch (e) {
    result.error = String(e.message).split('\n')[0];
  }
  return result;
}

async function runPAC() {
  const browser = await chromium.launch({ executablePath: job.chromium, headless: true,
    args: [...baseArgs(), '--proxy-pac-url=' + job.pacURL] });
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
      '--load-extension=' + ext, '--disable-extensions-except=' + ext],
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
      const page = await ctx.newPage();
      out.visits.push(await visit(ctx, page, v));
      await page.close();
    }
  } finally {
    await ctx.close();
  }
  return out;
}

(job.mode === 'extension' ? runExtension() : runPAC())
  .then((out) => { process.stdout.write(JSON.stringify(out)); })
  .catch((e) => { console.error(e); process.exit(1); });
