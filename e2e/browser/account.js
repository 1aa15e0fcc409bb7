// Drives Debian's Chromium (playwright-core) through the broker's /account/ pages as a
// supervisor would, and reports what it saw as JSON on stdout. Assertions live in
// e2e/account_test.go.
//
// Usage: node account.js JOB.json   (HOME must hold an NSS db trusting the test CA)
// JOB: { chromium, resolverRules, base: "https://admin.<domain>:PORT/account/", username,
//        password, target: the person to disable, accountPassword: the proxy account's new
//        password, idleMs: people.session_idle, timeoutMs }
// Result: { signinURL, me, cookie: {secure, httpOnly, sameSite}, withoutCSRF: {status, text},
//           targetRow, accountDone, afterSignOutURL, afterSignOutGet,
//           idle: {url, afterMs, reloads}, error }
'use strict';
const fs = require('fs');
const { chromium } = require('playwright-core');

const job = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const timeout = job.timeoutMs || 15000;

(async () => {
  const result = {};
  const browser = await chromium.launch({
    executablePath: job.chromium, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-default-apps', '--host-resolver-rules=' + job.resolverRules],
  });
  try {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    page.setDefaultTimeout(timeout);
    await page.goto(job.base);
    result.signinURL = page.url();
    await page.fill('input[name=username]', job.username);
    await page.fill('input[name=password]', job.password);
    await Promise.all([page.waitForURL(job.base), page.click('button[type=submit]')]);
    result.me = await page.textContent('#me');
    const cookie = (await ctx.cookies()).find((c) => c.name === '__Host-maintproxy-session') || {};
    result.cookie = { secure: cookie.secure, httpOnly: cookie.httpOnly, sameSite: cookie.sameSite };

    // A forged form: the target's disable form without its CSRF token.
    const row = `#people tr:has(td:text-is("${job.target}"))`;
    const [resp] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/account/action')),
      page.evaluate((target) => {
        for (const tr of document.querySelectorAll('#people tr')) {
          if (tr.cells[0] && tr.cells[0].textContent === target) {
            const form = tr.querySelector('form');
            form.querySelector('input[name=csrf]').remove();
            form.requestSubmit(form.querySelector('button[value=disable]'));
            return;
          }
        }
        throw new Error('no row for ' + target);
      }, job.target),
    ]);
    result.withoutCSRF = { status: resp.status(), text: (await resp.text()).trim() };

    // The real form.
    await page.goto(job.base);
    await Promise.all([page.waitForURL((u) => u.pathname === '/account/'), page.click(row + ' button[value=disable]')]);
    result.targetRow = (await page.textContent(row)).replace(/\s+/g, ' ').trim();

    // The organisation's proxy account password, through its form.
    await page.fill('#account-password input[name=new]', job.accountPassword);
    await page.fill('#account-password input[name=repeat]', job.accountPassword);
    await Promise.all([page.waitForURL((u) => u.pathname === '/account/'), page.click('#account-password button[type=submit]')]);
    result.accountDone = ((await page.textContent('#done').catch(() => '')) || '') + ((await page.textContent('#error').catch(() => '')) || '');

    await Promise.all([page.waitForURL((u) => u.pathname.endsWith('/signin')), page.click('form[action="/account/signout"] button')]);
    result.afterSignOutURL = page.url();
    await page.goto(job.base);
    result.afterSignOutGet = page.url();

    // Idle sign-out: sign in again, then reload with growing pauses (a reload is use, which
    // keeps the session) until a reload lands on the sign-in page, within a deadline.
    await page.fill('input[name=username]', job.username);
    await page.fill('input[name=password]', job.password);
    await Promise.all([page.waitForURL(job.base), page.click('button[type=submit]')]);
    const start = Date.now();
    const deadline = start + 10 * job.idleMs + 10000;
    let pause = 100;
    let reloads = 0;
    while (!page.url().endsWith('/account/signin') && Date.now() < deadline) {
      await new Promise((done) => setTimeout(done, pause));
      pause *= 2;
      await page.reload();
      reloads++;
    }
    result.idle = { url: page.url(), afterMs: Date.now() - start, reloads };
  } catch (e) {
    result.error = String(e && e.stack || e);
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(result));
})();
