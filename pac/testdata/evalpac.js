// Evaluates a PAC file in Node's vm with the standard PAC helper functions and prints, as
// JSON, FindProxyForURL's answer for each host read (JSON array of [url, host]) from stdin.
// Usage: node evalpac.js FILE.pac < cases.json
'use strict';
const fs = require('fs');
const vm = require('vm');

function shExpMatch(str, pat) {
  const re = '^' + pat.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$';
  return new RegExp(re).test(str);
}
const helpers = {
  shExpMatch,
  isPlainHostName: (h) => h.indexOf('.') < 0,
  dnsDomainIs: (h, d) => h.length >= d.length && h.substring(h.length - d.length) === d,
  localHostOrDomainIs: (h, hd) => h === hd || (h.indexOf('.') < 0 && hd.indexOf(h + '.') === 0),
  // Name resolution is deliberately unavailable: a PAC that resolves would leak lookups.
  isResolvable: () => { throw new Error('PAC must not resolve names'); },
  dnsResolve: () => { throw new Error('PAC must not resolve names'); },
  isInNet: () => { throw new Error('PAC must not resolve names'); },
  myIpAddress: () => '127.0.0.1',
  dnsDomainLevels: (h) => h.split('.').length - 1,
};

const ctx = vm.createContext(Object.assign({}, helpers));
vm.runInContext(fs.readFileSync(process.argv[2], 'utf8'), ctx, { filename: 'proxy.pac', timeout: 1000 });
if (typeof ctx.FindProxyForURL !== 'function') throw new Error('no FindProxyForURL');
const cases = JSON.parse(fs.readFileSync(0, 'utf8'));
const out = cases.map(([url, host]) => ctx.FindProxyForURL(url, host));
process.stdout.write(JSON.stringify(out));
