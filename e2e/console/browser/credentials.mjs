// Credentials: create one with a role, copy its secret (shown once), get a token with it,
// revoke it with confirmation, and see the secret stop working.
import { scenario, env, adminSignIn, heading, step, api, tokenWith, until, assert, log } from './lib.mjs';

const name = env('CREDENTIAL_NAME');
const role = env('CREDENTIAL_ROLE');

await scenario('credentials', async ({ page, shot }) => {
  await adminSignIn(page, '/console/credentials');
  await heading(page, 'Credentials');
  await page.getByTestId('credential-row').first().waitFor();
  await shot('credentials');

  await page.getByRole('button', { name: /create|new credential/i }).first().click();
  const form = page.locator('form').filter({ has: page.getByLabel(/name/i) }).last();
  await form.getByLabel(/name/i).first().fill(name);
  await pickRole(form, role);
  await shot('credentials-create');
  await form.getByRole('button', { name: /create/i }).last().click();

  const secretEl = page.getByTestId('secret-value');
  await secretEl.waitFor();
  const secret = ((await secretEl.inputValue().catch(() => null)) ?? (await secretEl.innerText())).trim();
  assert(secret.length >= 20, `the secret shown is ${secret.length} characters long`);
  await page.getByTestId('copy-secret').click();
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  assert(copied === secret, 'the clipboard does not hold the secret shown after Copy');
  await page.getByTestId('copy-secret').filter({ hasText: /copied/i }).or(page.getByText(/copied/i)).first().waitFor();
  await shot('credentials-secret');
  await step('created');

  const listed = await api('GET', '/credentials');
  const cred = listed.body.find((c) => c.name === name);
  assert(cred, `no credential ${name} in GET /credentials`);
  const ok = await tokenWith(cred.clientId, secret);
  assert(ok.status === 200 && ok.token, `a token with the copied secret: ${ok.status} ${ok.error}`);
  log(`got a token with the new credential ${cred.clientId}`);

  await page.getByRole('button', { name: /done|close|dismiss/i }).first().click();
  await secretEl.waitFor({ state: 'detached' });
  assert(!(await page.locator('body').innerText()).includes(secret), 'the secret is still on the page after closing');

  const row = page.getByTestId('credential-row').filter({ hasText: name });
  await row.waitFor();
  assert((await row.innerText()).includes(role), `the row of ${name} does not show its role ${role}`);
  await row.getByRole('button', { name: /revoke|delete/i }).click();
  await page.getByTestId('confirm-button').waitFor();
  await shot('credentials-revoke-confirm');
  await page.getByTestId('confirm-button').click();
  await row.waitFor({ state: 'detached' });
  await shot('credentials-revoked');

  await until('the revoked secret to stop working', async () => (await tokenWith(cred.clientId, secret)).status === 401);
});

// pickRole selects role in the form's role picker: a checkbox or radio labelled with it, or
// an option of a select.
async function pickRole(form, role) {
  const box = form.getByRole('checkbox', { name: role, exact: true }).or(form.getByRole('radio', { name: role, exact: true }));
  if (await box.count()) {
    await box.first().check();
    return;
  }
  const select = form.locator('select');
  if (await select.count()) {
    await select.first().selectOption({ label: role });
    return;
  }
  await form.getByRole('combobox').first().click();
  await form.page().getByRole('option', { name: role, exact: true }).click();
}
