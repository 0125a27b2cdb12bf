// confirm.js: a yes/no question in #confirm-dialog (index.html), used
// before an action that changes the plant (enabling or disabling a
// device). confirmAction(text, yesLabel) resolves true on #confirm-yes,
// false on #confirm-no, Escape or closing.

const $ = (id) => document.getElementById(id);

let settle = null;
let wired = false;

function wire() {
  if (wired) return;
  wired = true;
  $('confirm-yes').addEventListener('click', () => finish(true));
  $('confirm-no').addEventListener('click', () => finish(false));
  // Escape closes the dialog; the close event comes a task later, when a new
  // question may already be open.
  $('confirm-dialog').addEventListener('close', () => {
    if (!$('confirm-dialog').open) finish(false);
  });
}

function finish(answer) {
  const done = settle;
  settle = null;
  if ($('confirm-dialog').open) $('confirm-dialog').close();
  if (done) done(answer);
}

export function confirmAction(text, yesLabel = 'Yes') {
  wire();
  if (settle) finish(false);
  $('confirm-text').textContent = text;
  $('confirm-yes').textContent = yesLabel;
  $('confirm-dialog').showModal();
  $('confirm-no').focus();
  return new Promise((resolve) => {
    settle = resolve;
  });
}
