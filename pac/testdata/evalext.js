// Runs the extension's service worker in Node's vm against a fake chrome.proxy, then
// evaluates the PAC script it installed. Usage: node evalext.js DIR < job.json
//
// job: {
//   base:   {levelOfControl, value}   the settings beneath the extension's (chrome.proxy.settings.get
//                                     as the browser answers when the extension controls nothing)
//   ours:   value                     the extension's own setting already in force (a worker woken
//                                     again, a browser restart), or absent
//   pacFiles: {url: text}             what fetch answers (others fail)
//   events: [{type: "restart" | "startup" | "alarm" | "base", base, pacFiles}]
//   cases:  [[url, host], ...]        FindProxyForURL calls on the final script
// }
// Prints {setting, sets, clears, fetches, results, warnings}.
'use strict';
const fs = require('fs');
const path = require('path');
const vm = require('vm');
const { evalPAC } = require('./pachost.js');

const dir = process.argv[2];
const job = JSON.parse(fs.readFileSync(0, 'utf8'));
const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
const source = fs.readFileSync(path.join(dir, manifest.background.service_worker), 'utf8');

const state = { base: job.base, ours: job.ours || null, sets: 0, clears: 0, fetches: [], warnings: [], pacFiles: job.pacFiles || {} };
let alarms = {};

// newWorker starts the worker script in a fresh global, as Chrome does on each wake-up.
function newWorker() {
  const listeners = { installed: [], startup: [], alarm: [] };
  const runtime = { lastError: undefined };
  const finish = (cb, v, err) => { runtime.lastError = err ? { message: err } : undefined; cb(v); runtime.lastError = undefined; };
  const settings = {
    get(details, cb) {
      const v = state.ours
        ? { levelOfControl: 'controlled_by_this_extension', value: state.ours }
        : { levelOfControl: state.base.levelOfControl || 'controllable_by_this_extension', value: state.base.value };
      setImmediate(() => finish(cb, JSON.parse(JSON.stringify(v))));
    },
    set(details, cb) {
      setImmediate(() => {
        if (state.base.levelOfControl === 'not_controllable') return finish(cb, undefined, 'not controllable');
        if (details.scope !== 'regular') return finish(cb, undefined, 'scope ' + details.scope);
        state.ours = details.value;
        state.sets++;
        finish(cb);
      });
    },
    clear(details, cb) { setImmediate(() => { state.ours = null; state.clears++; finish(cb); }); },
  };
  const chrome = {
    runtime: Object.assign(runtime, {
      onInstalled: { addListener: (f) => listeners.installed.push(f) },
      onStartup: { addListener: (f) => listeners.startup.push(f) },
    }),
    proxy: { settings },
    alarms: {
      get: (name, cb) => setImmediate(() => cb(alarms[name])),
      create: (name, info) => { alarms[name] = Object.assign({ name }, info); },
      onAlarm: { addListener: (f) => listeners.alarm.push(f) },
    },
  };
  const fetch = async (url) => {
    state.fetches.push(url);
    if (!(url in state.pacFiles)) throw new Error('unreachable: ' + url);
    const text = state.pacFiles[url];
    return { ok: true, status: 200, text: async () => text };
  };
  const console = { log() {}, error: (...a) => state.warnings.push(a.join(' ')), warn: (...a) => state.warnings.push(a.join(' ')) };
  const ctx = vm.createContext({ chrome, fetch, console, setTimeout, Promise, JSON, encodeURIComponent, decodeURIComponent });
  ctx.self = ctx;
  vm.runInContext(source, ctx, { filename: 'background.js', timeout: 1000 });
  return { ctx, listeners };
}

(async () => {
  let w = newWorker();
  await w.ctx.maintproxyReady;
  for (const ev of job.events || []) {
    if (ev.type === 'base') { state.base = ev.base; if (ev.pacFiles) state.pacFiles = ev.pacFiles; continue; }
    if (ev.type === 'restart') { w = newWorker(); await w.ctx.maintproxyReady; continue; }
    const fns = ev.type === 'startup' ? w.listeners.startup : ev.type === 'installed' ? w.listeners.installed : w.listeners.alarm;
    fns.forEach((f) => f({ name: 'maintproxy-refresh', reason: 'install' }));
    await w.ctx.maintproxyReady;
  }
  const script = state.ours && state.ours.pacScript && state.ours.pacScript.data;
  const out = { setting: state.ours, sets: state.sets, clears: state.clears, fetches: state.fetches, warnings: state.warnings,
    alarm: alarms['maintproxy-refresh'] || null, results: script ? evalPAC(script, job.cases || [], 'wrapped.pac') : null };
  process.stdout.write(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
