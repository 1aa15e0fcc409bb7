// The PAC host: evaluates a PAC script in Node's vm with the standard helper functions, as
// a browser's resolver would, and answers FindProxyForURL for each [url, host] case.
// Used by evalpac.js and evalext.js.
'use strict';
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

// evalPAC runs script (named filename in errors) and returns FindProxyForURL's answers.
function evalPAC(script, cases, filename) {
  const ctx = vm.createContext(Object.assign({}, helpers));
  vm.runInContext(script, ctx, { filename, timeout: 1000 });
  if (typeof ctx.FindProxyForURL !== 'function') throw new Error('no FindProxyForURL');
  return cases.map(([url, host]) => ctx.FindProxyForURL(url, host));
}

module.exports = { evalPAC };
