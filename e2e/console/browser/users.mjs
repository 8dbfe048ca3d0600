// Users: the admin sees the people of the environment with their roles. One of them changes
// their password (a wrong current one is refused; their other console session ends, this one
// goes on), then the admin removes them while they are signed in: their open console loses
// its session at once, with no reload, and their new password no longer signs in (the same
// generic message as any failure).
import { scenario, env, adminSignIn, signIn, submit, heading, nav, assert } from './lib.mjs';

const login = env('REMOVED_LOGIN');
const password = env('REMOVED_PASSWORD');
const newPassword = `${password} renewed`;

await scenario('users', async ({ page, shot, person }) => {
  await adminSignIn(page, '/console/users');
  await heading(page, 'Users');
  const admin = page.getByTestId('user-row').filter({ hasText: env('SORTIE_ADMIN_LOGIN') });
  await admin.first().waitFor();
  assert((await admin.first().innerText()).includes('Organization Admin'), 'the admin row does not show the role Organization Admin');
  const row = page.getByTestId('user-row').filter({ hasText: login });
  await row.waitFor();
  assert((await row.innerText()).includes('Deployments Full Access'), `the row of ${login} does not show its role`);
  await shot('users');

  const { page: other } = await person();
  await signIn(other, login, password, '/console/deployments');
  await heading(other, 'Deployments');
  await other.getByTestId('principal-name').filter({ hasText: login }).waitFor();

  const { page: elsewhere } = await person();
  await signIn(elsewhere, login, password, '/console/deployments');
  await other.getByTestId('user-menu').click();
  await other.getByRole('menuitem', { name: 'Change password' }).click();
  const dialog = other.getByRole('dialog');
  await dialog.getByLabel('Current password').fill('not my password at all');
  await dialog.getByLabel('New password', { exact: true }).fill(newPassword);
  await dialog.getByLabel('Repeat the new password').fill(newPassword);
  await dialog.getByRole('button', { name: 'Change password' }).click();
  await dialog.getByTestId('error-message').filter({ hasText: 'is wrong' }).waitFor();
  await dialog.getByLabel('Current password').fill(password);
  await dialog.getByRole('button', { name: 'Change password' }).click();
  const notice = dialog.getByText('Your password was changed.');
  await notice.waitFor();
  assert((await notice.innerText()).includes('sortie login'), 'the notice does not say that terminals are signed out too');
  await shot('password-changed', other);
  await dialog.getByRole('button', { name: 'Close' }).click();
  await elsewhere.waitForURL(/\/oauth\/authorize/); // the other session ended by itself
  await nav(other, 'Agents'); // this one goes on

  await row.getByRole('button', { name: `Remove ${login}` }).click();
  await page.getByTestId('confirm-button').waitFor();
  await shot('users-remove-confirm');
  await page.getByTestId('confirm-button').click();
  await row.waitFor({ state: 'detached' });

  // The removed user's console notices on its own and goes to the sign-in page.
  await other.waitForURL(/\/oauth\/authorize/);
  await other.locator('input[name=login]').fill(login);
  await other.locator('input[name=password]').fill(newPassword);
  await submit(other);
  await other.getByText('Wrong login or password.').waitFor();
  await shot('users-removed-signin', other);
});
