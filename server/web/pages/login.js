// pages/login.js: the login form (POST /api/login). On success the app
// takes the session and goes to #/tags.

import * as api from '../api.js';
import { el, showError } from '../ui.js';

export function mount(view, { onLogin }) {
  const user = el('input', { id: 'login-user', name: 'user', autocomplete: 'username', required: true });
  const password = el('input', {
    id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password',
  });
  const submit = el('button', { id: 'login-submit', type: 'submit', class: 'primary', text: 'Log in' });
  const error = el('p', { id: 'login-error', class: 'error', role: 'alert', hidden: true });
  const form = el('form', { id: 'login-form', class: 'login-form' },
    el('h1', { text: 'Bifrost' }),
    el('label', { for: 'login-user', text: 'User' }), user,
    el('label', { for: 'login-password', text: 'Password' }), password,
    submit, error);
  view.append(form);
  user.focus();

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    showError(error, null);
    submit.disabled = true;
    try {
      onLogin(await api.login(user.value, password.value));
    } catch (err) {
      showError(error, err.status === 401 ? new Error(err.message || 'wrong user or password') : err);
      password.select();
    } finally {
      submit.disabled = false;
    }
  });
  return { unmount() {} };
}
