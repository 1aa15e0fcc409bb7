// Access pages: copy buttons, the overview's filter, and the technician's choices (SSH
// user, tools folders, first local port) on a system's page.
//
// The pages show passwords as *****; a button with data-copy asks the server (same
// Basic-auth session) for the command with the password filled in, so the password never
// sits in the page. data-text copies a value as shown. The choices are sent to the server,
// which quotes them into the commands (one place, tested in Go); they are kept in
// localStorage so the next system's page starts with them.
'use strict';

const base = '/com/remoteproxy/access';
const fields = ['ssh_user', 'tools_linux', 'tools_windows', 'port'];
const storeKey = 'maintproxy-access-params';

// params returns the non-empty choices of the form (or those stored) as a query string.
function params() {
  const form = document.getElementById('params');
  const q = new URLSearchParams();
  if (form) {
    for (const f of fields) {
      const v = form.elements[f].value.trim();
      if (v) q.set(f, v);
    }
  } else {
    const saved = stored();
    for (const f of fields) if (saved[f]) q.set(f, saved[f]);
  }
  return q;
}

function stored() {
  try { return JSON.parse(localStorage.getItem(storeKey) || '{}') || {}; } catch (e) { return {}; }
}

function commandText(button) {
  if (button.dataset.text !== undefined) return Promise.resolve(button.dataset.text);
  const q = params();
  q.set('id', button.dataset.copy);
  return fetch(base + '/copy?' + q, { credentials: 'same-origin', cache: 'no-store' }).then(function (r) {
    if (!r.ok) throw new Error('HTTP ' + r.status);
    return r.text();
  });
}

function copy(button) {
  const text = commandText(button);
  let done;
  if (window.ClipboardItem && navigator.clipboard && navigator.clipboard.write) {
    // A promise inside the ClipboardItem keeps the click's user activation across the fetch.
    done = navigator.clipboard.write([new ClipboardItem({
      'text/plain': text.then(function (t) { return new Blob([t], { type: 'text/plain' }); }),
    })]);
  } else {
    done = text.then(function (t) { return navigator.clipboard.writeText(t); });
  }
  done.then(function () { flash(button, 'Copied', 'done'); },
    function (err) { console.error('copy failed', err); flash(button, 'Failed', 'failed'); });
}

function flash(button, label, cls) {
  button.textContent = label;
  button.classList.add(cls);
  setTimeout(function () { button.textContent = 'Copy'; button.classList.remove(cls); }, 1500);
}

document.addEventListener('click', function (ev) {
  const button = ev.target.closest('button.copy');
  if (button) copy(button);
});

// The overview's filter: every system row whose customer or own text holds all the words,
// and whose light matches; customers without a shown system are hidden.
function setupFilter() {
  const input = document.getElementById('filter');
  const light = document.getElementById('light');
  const table = document.getElementById('systems');
  if (!input || !table) return;
  const groups = Array.from(table.tBodies).map(function (tb) {
    const rows = Array.from(tb.rows);
    const head = rows.shift();
    const cust = head.cells[1].textContent.toLowerCase();
    const id = cust.split(' ')[0];
    return { tb: tb, cust: cust, rows: rows.map(function (r) {
      const name = r.cells[1].textContent.toLowerCase();
      return { tr: r, light: r.dataset.l, text: cust + ' ' + id + '-' + name + ' ' + r.textContent.toLowerCase() };
    }) };
  });
  const shown = document.getElementById('shown');
  function apply() {
    const words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    const want = light.value;
    let n = 0;
    for (const g of groups) {
      let any = false;
      for (const r of g.rows) {
        const ok = (!want || r.light === want) && words.every(function (w) { return r.text.indexOf(w) >= 0; });
        r.tr.hidden = !ok;
        if (ok) { any = true; n++; }
      }
      g.tb.hidden = !any;
    }
    shown.textContent = (words.length || want) ? n + ' shown' : '';
  }
  input.addEventListener('input', apply);
  light.addEventListener('change', apply);
  if (input.value || light.value) apply(); // the browser restored the fields
}

// The overview's ssh_config link carries the stored SSH user and tools folder.
function setupSSHConfigLink() {
  const a = document.getElementById('ssh-config');
  if (!a) return;
  const q = params();
  q.delete('port');
  q.delete('tools_windows');
  if ([...q].length) a.href = a.href.split('?')[0] + '?' + q;
}

// A system page's choices: applied without reloading by fetching the page's JSON with
// them and putting its commands and download links in place.
function setupParams() {
  const form = document.getElementById('params');
  const article = document.getElementById('system');
  if (!form || !article) return;
  const error = document.getElementById('param-error');
  let timer = null;
  let seq = 0;
  function update() {
    const q = params();
    const mine = ++seq;
    q.set('format', 'json');
    fetch(location.pathname + '?' + q, { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) { return r.json().then(function (body) { return { ok: r.ok, body: body }; }); })
      .then(function (res) {
        if (mine !== seq) return; // a later change is on its way
        if (!res.ok) { error.textContent = res.body.error || 'not accepted'; return; }
        error.textContent = '';
        fill(res.body.system);
        q.delete('format');
        const keep = {};
        for (const f of fields) if (q.get(f)) keep[f] = q.get(f);
        try { localStorage.setItem(storeKey, JSON.stringify(keep)); } catch (e) { /* private mode */ }
        history.replaceState(null, '', location.pathname + ([...q].length ? '?' + q : ''));
      })
      .catch(function (err) { error.textContent = 'could not update: ' + err.message; });
  }
  function schedule() { clearTimeout(timer); timer = setTimeout(update, 250); }
  form.addEventListener('input', schedule);
  form.addEventListener('submit', function (ev) { ev.preventDefault(); update(); });
  // Start from the stored choices when the address carries none.
  const saved = stored();
  if (!location.search && fields.some(function (f) { return saved[f]; })) {
    for (const f of fields) if (saved[f]) form.elements[f].value = saved[f];
    update();
  }
}

function fill(sys) {
  setCommands(sys.id, sys.commands);
  setCommands(sys.id + '/rdp', sys.rdp_commands);
  setLink(sys.id + '/rdp', sys.rdp_file);
  for (const t of sys.tunnels || []) {
    setCommands(t.id, t.commands);
    setLink(t.id, t.rdp_file);
  }
}

function setCommands(prefix, cmds) {
  for (const key in cmds || {}) {
    const el = document.querySelector('code.cmd[data-id="' + CSS.escape(prefix + '/' + key) + '"]');
    if (el) el.textContent = cmds[key];
  }
}

function setLink(id, href) {
  const a = document.querySelector('a.rdp[data-for="' + CSS.escape(id) + '"]');
  if (a && href) a.href = href;
}

document.addEventListener('DOMContentLoaded', function () {
  setupFilter();
  setupSSHConfigLink();
  setupParams();
});
