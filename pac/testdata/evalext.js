// Runs the extension's background.js in Node's vm with a fake chrome API and prints, as
// JSON, the proxy setting it installs. Usage: node evalext.js DIR
'use strict';
const fs = require('fs');
const path = require('path');
const vm = require('vm');

let setting = null;
const listeners = () => ({ addListener() {} });
const chrome = {
  runtime: { onInstalled: listeners(), onStartup: listeners(), lastError: undefined },
  proxy: { settings: { set(details, cb) { setting = details; if (cb) cb(); } } },
};
const manifest = JSON.parse(fs.readFileSync(path.join(process.argv[2], 'manifest.json'), 'utf8'));
const worker = manifest.background.service_worker;
vm.runInContext(fs.readFileSync(path.join(process.argv[2], worker), 'utf8'),
  vm.createContext({ chrome, console }), { filename: worker, timeout: 1000 });
process.stdout.write(JSON.stringify(setting));
