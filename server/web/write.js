// write.js: the write dialog (#write-dialog in index.html). Shows the
// tag's current value, parses the input by the tag's data_type (bad input
// is refused here, nothing sent), asks "write X to T?" (#write-really,
// #write-cancel) and shows the answer of POST /api/write in #write-outcome:
// "ok, read back V", "rejected: …", "timeout: …" or "error: …".

import * as api from './api.js';
import { fmtValue, errorText } from './ui.js';

const $ = (id) => document.getElementById(id);
const INT_RANGES = {
  i16: [-32768, 32767],
  u16: [0, 65535],
  i32: [-2147483648, 2147483647],
  u32: [0, 4294967295],
  i64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  int: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  integer: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
};
const FLOAT_TYPES = new Set(['f32', 'f64', 'float', 'double', 'number']);
const TEXT_TYPES = new Set(['string', 'text']);

let state = null; // {tag, value} while the dialog is open
let wired = false;

/**
 * Parses input text as a value of the data type: {value} or {error}.
 * bool: true/false/1/0; integer types: a whole number in the type's range;
 * floats: a finite number; string/text: the text as it is.
 */
export function parseValue(text, dataType) {
  const type = String(dataType || '').toLowerCase();
  const t = text.trim();
  if (type === 'bool' || type === 'boolean') return parseBool(t);
  if (INT_RANGES[type]) return parseInteger(t, type);
  if (FLOAT_TYPES.has(type)) return parseFloatValue(t);
  if (TEXT_TYPES.has(type)) return { value: text };
  return { error: `cannot write a value of type '${dataType}'` };
}

function parseBool(t) {
  const v = t.toLowerCase();
  if (v === 'true' || v === '1') return { value: true };
  if (v === 'false' || v === '0') return { value: false };
  return { error: 'enter true, false, 1 or 0' };
}

function parseInteger(t, type) {
  if (!/^[+-]?\d+$/.test(t)) return { error: `enter a whole number (${type})` };
  const n = Number(t);
  const [lo, hi] = INT_RANGES[type];
  if (n < lo || n > hi) return { error: `${t} is out of range for ${type} (${lo} to ${hi})` };
  return { value: n };
}

function parseFloatValue(t) {
  const n = t === '' ? NaN : Number(t);
  if (!Number.isFinite(n)) return { error: 'enter a number' };
  return { value: n };
}

/** The value as the question shows it: strings quoted. */
function shown(value) {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

/** Opens the dialog for a tag ({name, data_type, ...}) with its current reading (or null). */
export function openWrite(tag, reading) {
  wire();
  state = { tag, value: undefined };
  $('write-tag').textContent = tag.name;
  $('write-type').textContent = `(${tag.data_type}${tag.units ? `, ${tag.units}` : ''})`;
  updateCurrent(tag.name, reading);
  $('write-value').value = '';
  setOutcome('', '');
  editMode();
  $('write-cancel').textContent = 'Cancel';
  $('write-dialog').showModal();
  $('write-value').focus();
}

/** Keeps #write-current up to date while the dialog is open for this tag. */
export function updateCurrent(name, reading) {
  if (!state || state.tag.name !== name) return;
  const text = reading ? fmtValue(reading.value) : 'no reading';
  $('write-current').textContent = reading && reading.quality !== 'good' ? `${text} (${reading.quality})` : text;
}

function wire() {
  if (wired) return;
  wired = true;
  $('write-confirm').addEventListener('click', askConfirm);
  $('write-really').addEventListener('click', doWrite);
  $('write-cancel').addEventListener('click', () => $('write-dialog').close());
  // The close event comes a task later: the dialog may be open again by then.
  $('write-dialog').addEventListener('close', () => {
    if (!$('write-dialog').open) state = null;
  });
  $('write-value').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter') {
      ev.preventDefault();
      askConfirm();
    }
  });
}

function editMode() {
  $('write-value').disabled = false;
  $('write-confirm').hidden = false;
  $('write-really').hidden = true;
  $('write-really').disabled = false;
  $('write-really').textContent = 'Yes, write';
  $('write-question').hidden = true;
  $('write-error').hidden = true;
}

function askConfirm() {
  if (!state) return;
  const parsed = parseValue($('write-value').value, state.tag.data_type);
  if (parsed.error) {
    $('write-error').textContent = parsed.error;
    $('write-error').hidden = false;
    return;
  }
  state.value = parsed.value;
  $('write-error').hidden = true;
  $('write-question').textContent = `write ${shown(parsed.value)} to ${state.tag.name}?`;
  $('write-question').hidden = false;
  $('write-value').disabled = true;
  $('write-confirm').hidden = true;
  $('write-really').hidden = false;
  $('write-really').focus();
}

async function doWrite() {
  if (!state || state.value === undefined) return;
  const { tag, value } = state;
  $('write-really').disabled = true;
  $('write-really').textContent = 'Writing…';
  setOutcome('', '');
  let outcome;
  try {
    outcome = outcomeText(await api.write(tag.name, value));
  } catch (err) {
    outcome = errorOutcome(err);
  }
  setOutcome(outcome.kind, outcome.text);
  if (state && state.tag === tag) {
    editMode();
    $('write-cancel').textContent = 'Close';
  }
}

/** The text for a write answer {outcome, message, read_back, node}. */
function outcomeText(answer) {
  const kind = answer.outcome || 'error';
  const message = answer.message || '';
  if (kind === 'ok') {
    const back = answer.read_back;
    const rb = back === null || back === undefined ? '' : `, read back ${fmtValue(readBackValue(back))}`;
    return { kind, text: `ok${rb}${message ? ` (${message})` : ''}` };
  }
  if (kind === 'rejected' || kind === 'timeout') return { kind, text: `${kind}: ${message}` };
  return { kind: 'error', text: `error: ${kind}${message ? `: ${message}` : ''}` };
}

/** read_back may be a bare value or a reading ({value, ...}). */
function readBackValue(back) {
  return back && typeof back === 'object' && 'value' in back ? back.value : back;
}

function errorOutcome(err) {
  if (err.status === 504 || err.code === 'deadline_exceeded') {
    return { kind: 'timeout', text: `timeout: ${errorText(err)}` };
  }
  return { kind: 'error', text: `error: ${errorText(err)}` };
}

function setOutcome(kind, text) {
  const node = $('write-outcome');
  node.textContent = text;
  node.dataset.outcome = kind;
  node.className = `mono outcome-${kind || 'none'}`;
}
