// Shared helpers of the browser scenarios: one headless chromium per script with a fresh
// profile, sign-in, waits, screenshots, and the step channel to the Go test (a line
// "@@step NAME" on stdout, answered by a line on stdin).
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

// playwright-core is a devDependency of the console: resolve it from console/node_modules.
const require = createRequire(new URL('../../../console/package.json', import.meta.url));
const { chromium } = require('playwright-core');

export function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (the Go test sets it)`);
  return v;
}

export const base = () => env('SORTIE_URL');

const launchArgs = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

// Timeouts: generous, since the machine running the tests may be busy; a wait that expires
// fails the scenario with what it waited for.
const waitMs = 30_000;

let stdinLines;
// step asks the Go test to do something (start an agent...) and waits until it is done.
export async function step(name) {
  if (!stdinLines) stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  console.log(`@@step ${name}`);
  const { value, done } = await stdinLines.next();
  if (done) throw new Error(`step ${name}: the test closed the channel`);
  if (value !== 'ok') throw new Error(`step ${name}: ${value}`);
}

export function log(...args) {
  console.error(`[${new Date().toISOString().slice(11, 23)}]`, ...args);
}

// scenario launches the browser (a fresh profile in a new temporary user-data dir), runs
// fn({ context, page, shot, person }), and exits non-zero with the error, the page's URL
// and a failure screenshot when fn throws. person() opens a page in a context of its own,
// for a second person at another computer. Failed responses and console errors of the pages
// are printed; a Content-Security-Policy violation or an uncaught error fails the scenario.
export async function scenario(name, fn) {
  const browser = await chromium.launch({
    executablePath: process.env.SORTIE_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: launchArgs,
  });
  const problems = [];
  const watch = (page) => {
    page.on('console', (m) => {
      if (m.type() !== 'error') return;
      const text = m.text();
      if (/^Failed to load resource/.test(text)) return; // logged with its URL below
      log(`page console error: ${text}`);
      if (/Content Security Policy/i.test(text)) problems.push(`CSP violation: ${text}`);
    });
    page.on('response', (r) => {
      if (r.status() >= 400) log(`HTTP ${r.status()} ${r.request().method()} ${r.url().split('?')[0]}`);
    });
    page.on('pageerror', (e) => {
      log(`page error: ${e.message}`);
      problems.push(`uncaught error in the page: ${e.message}`);
    });
  };
  const person = async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base() });
    context.setDefaultTimeout(waitMs);
    context.on('page', watch);
    const page = await context.newPage();
    return { context, page };
  };
  const { context, page } = await person();
  let n = 0;
  const shot = async (label, p = page) => {
    const file = join(env('SORTIE_SCREENSHOT_DIR'), `${label}.png`);
    await p.screenshot({ path: file });
    log(`screenshot ${++n}: ${file} (${p.url()})`);
  };
  let code = 0;
  let current = page;
  try {
    await fn({ context, page, shot, person: async () => { const p = await person(); current = p.page; return p; } });
    if (problems.length) throw new Error(problems.join('\n'));
    log(`${name}: passed`);
  } catch (e) {
    code = 1;
    console.error(`${name}: FAILED at ${current.url()}\n${e.stack || e}`);
    try {
      await shot(`${name}-failure`, current);
      console.error(`page text:\n${(await current.locator('body').innerText()).slice(0, 3000)}`);
    } catch (e2) {
      console.error(`no failure screenshot: ${e2.message}`);
    }
  } finally {
    await browser.close().catch(() => {});
  }
  process.exit(code);
}

// signIn opens the console, which sends the browser to Sortie's sign-in page, signs in
// with a local account and waits for the console to show a page again.
export async function signIn(page, login, password, path = '/console/') {
  await page.goto(base() + path);
  await page.waitForURL(/\/oauth\/authorize/);
  await page.locator('input[name=login]').fill(login);
  await page.locator('input[name=password]').fill(password);
  await submit(page);
  await page.waitForURL((u) => u.pathname.startsWith('/console/') && !u.pathname.startsWith('/console/callback'));
  await page.locator('h1').first().waitFor();
}

// submit clicks the sign-in form's submit button.
export async function submit(page) {
  await page.locator('form button[type=submit], form input[type=submit]').first().click();
}

// signOut signs out through the user menu and waits for the sign-in page.
export async function signOut(page) {
  await page.getByTestId('user-menu').click();
  await page.getByRole('menuitem', { name: /sign out/i }).click();
  await page.waitForURL(/\/oauth\/authorize/);
  await page.locator('input[name=login]').waitFor();
}

// roleBox is the role picker's checkbox of role (its label also lists the role's scopes).
export function roleBox(scope, role) {
  return scope.getByRole('checkbox', { name: new RegExp(`^${role.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\b`) });
}

// shown reads the text of a shown-once value (a secret, a link, a code).
export async function shown(locator) {
  await locator.waitFor();
  return ((await locator.inputValue().catch(() => null)) ?? (await locator.innerText())).trim();
}

export async function adminSignIn(page, path) {
  await signIn(page, env('SORTIE_ADMIN_LOGIN'), env('SORTIE_ADMIN_PASSWORD'), path);
}

// heading waits for the page's h1 to read title.
export async function heading(page, title) {
  await page.locator('h1', { hasText: title }).first().waitFor();
}

// go navigates inside the console through its navigation (no reload), by link name.
export async function nav(page, name, title = name) {
  await page.getByRole('link', { name, exact: false }).first().click();
  await heading(page, title);
}

// until polls fn until it returns a truthy value, failing with what after ms.
export async function until(what, fn, ms = waitMs) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e.message;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms / 1000}s waiting for ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

// statusIs waits for the status badge in scope to read status (the API's enum text).
export async function statusIs(scope, status, ms = 90_000) {
  const badge = scope.getByTestId('status').first();
  let seen = '';
  await until(`status ${status}`, async () => {
    seen = (await badge.innerText()).trim();
    return seen === status;
  }, ms).catch((e) => { throw new Error(`${e.message}; the badge reads ${JSON.stringify(seen)}`); });
}

// api calls Sortie's REST API with the test's machine token.
export async function api(method, path, body, token = env('SORTIE_TOKEN')) {
  const res = await fetch(base() + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

// tokenWith asks for a token with client credentials and returns the HTTP status.
export async function tokenWith(clientId, secret) {
  const res = await fetch(base() + '/oauth/token', {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: clientId, client_secret: secret }),
  });
  const body = await res.json().catch(() => ({}));
  return { status: res.status, token: body.access_token, error: body.error };
}

// sessionCall sends a request from the page with its session: the HttpOnly cookie and the
// CSRF header, as the console does. Connect procedures are "Service/Method" paths.
export async function sessionCall(page, path, body = {}) {
  return page.evaluate(async ({ path, body }) => {
    const csrf = document.cookie.split('; ').find((c) => c.startsWith('sortie_csrf='))?.slice('sortie_csrf='.length) ?? '';
    const r = await fetch(path, {
      method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf }, body: JSON.stringify(body),
    });
    const text = await r.text();
    return { status: r.status, text, body: text.startsWith('{') ? JSON.parse(text) : null };
  }, { path, body });
}

export function assert(cond, message) {
  if (!cond) throw new Error(message);
}
