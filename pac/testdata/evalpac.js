// Evaluates a PAC file in Node's vm with the standard PAC helper functions (pachost.js) and
// prints, as JSON, FindProxyForURL's answer for each host read (JSON array of [url, host])
// from stdin.
// Usage: node evalpac.js FILE.pac < cases.json
'use strict';
const fs = require('fs');
const { evalPAC } = require('./pachost.js');

const cases = JSON.parse(fs.readFileSync(0, 'utf8'));
process.stdout.write(JSON.stringify(evalPAC(fs.readFileSync(process.argv[2], 'utf8'), cases, 'proxy.pac')));
