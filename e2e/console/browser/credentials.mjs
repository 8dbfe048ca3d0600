// Credentials: create one with a role, copy its secret (shown once), get a token with it,
// revoke it with confirmation, and see the secret stop working.
import { scenario, env, adminSignIn, heading, step, tokenWith, until, roleBox, shown, assert, log } from './lib.mjs';

const name = env('CREDENTIAL_NAME');
const role = env('CREDENTIAL_ROLE');

await scenario('credentials', async ({ page, shot }) => {
  await adminSignIn(page, '/console/credentials');
  await heading(page, 'Credentials');
  await page.getByTestId('credential-row').first().waitFor();
  await shot('credentials');

  await page.getByRole('button', { name: 'New credential' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByLabel('Name').fill(name);
  // Only roles the admin may grant are offered; all three system roles for an admin.
  for (const r of ['Organization Admin', 'Deployments Full Access', 'Remote Network Agent']) {
    assert(await roleBox(dialog, r).count() === 1, `the role picker does not offer ${r}`);
  }
  await roleBox(dialog, role).check();
  await shot('credentials-create');
  await dialog.getByRole('button', { name: 'Create credential' }).click();

  const secret = await shown(dialog.getByTestId('secret-value'));
  const clientId = await shown(dialog.getByTestId('client-id'));
  assert(secret.length >= 20, `the secret shown is ${secret.length} characters long`);
  await dialog.getByTestId('copy-secret').click();
  await dialog.getByTestId('copy-secret').filter({ hasText: 'Copied' }).waitFor();
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  assert(copied === secret, 'the clipboard does not hold the secret shown after Copy');
  await shot('credentials-secret');
  await step('created');

  const ok = await tokenWith(clientId, copied);
  assert(ok.status === 200 && ok.token, `a token with the copied secret: ${ok.status} ${ok.error}`);
  log(`got a token with the new credential ${clientId}`);

  await dialog.getByRole('button', { name: 'Done' }).click();
  await dialog.waitFor({ state: 'detached' });
  assert(!(await page.locator('body').innerText()).includes(secret), 'the secret is still on the page after closing its dialog');

  const row = page.getByTestId('credential-row').filter({ hasText: name });
  await row.waitFor();
  const rowText = await row.innerText();
  assert(rowText.includes(role) && rowText.includes(clientId), `the row of ${name} does not show its client id and role: ${rowText}`);
  await row.getByRole('button', { name: `Revoke ${name}` }).click();
  await page.getByTestId('confirm-button').waitFor();
  await shot('credentials-revoke-confirm');
  await page.getByTestId('confirm-button').click();
  await row.waitFor({ state: 'detached' });
  await shot('credentials-revoked');

  await until('the revoked secret to stop working', async () => (await tokenWith(clientId, copied)).status === 401);
});
