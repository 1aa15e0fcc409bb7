// Copy buttons of the access-info page. The page shows passwords as *****; a button with
// data-copy asks the server (same Basic-auth session) for the command with the password
// filled in, so the password never sits in the page. data-text copies a value as shown.
'use strict';

function commandText(button) {
  if (button.dataset.text !== undefined) return Promise.resolve(button.dataset.text);
  const url = 'access/copy?id=' + encodeURIComponent(button.dataset.copy);
  return fetch(url, { credentials: 'same-origin', cache: 'no-store' }).then(function (r) {
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
