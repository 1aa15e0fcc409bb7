// Package pac serves everything a technician's browser and tools need from the broker's
// web listener (admin.<domain>) under /com/remoteproxy/:
//
//   - proxy.pac: the proxy auto-configuration file (no auth);
//   - chrome-extension.zip: a Manifest V3 extension that installs the same rules through
//     chrome.proxy for browsers that already use another PAC file;
//   - tools.zip: the root certificate the proxy chains to, a README with this broker's
//     commands and the maint client binaries;
//   - access: the access-info page (Basic auth with the proxy account), HTML or JSON.
//
// PAC is the single source of the routing rule; the extension embeds its output, so the two
// cannot disagree. Zips are deterministic (fixed modification times, sorted entries) and
// cached until the configuration, the root certificate or the tool binaries change.
package pac
