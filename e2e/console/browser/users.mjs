// Users: the admin sees the people of the environment with their roles, and removes one
// who is signed in elsewhere: that person's open console loses its session at once, with no
// reload, and their password no longer signs in (the same generic message as any failure).
import { scenario, env, adminSignIn, signIn, submit, heading, assert } from './lib.mjs';

const login = env('REMOVED_LOGIN');
const password = env('REMOVED_PASSWORD');

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

  await row.getByRole('button', { name: `Remove ${login}` }).click();
  await page.getByTestId('confirm-button').waitFor();
  await shot('users-remove-confirm');
  await page.getByTestId('confirm-button').click();
  await row.waitFor({ state: 'detached' });

  // The removed user's console notices on its own and goes to the sign-in page.
  await other.waitForURL(/\/oauth\/authorize/);
  await other.locator('input[name=login]').fill(login);
  await other.locator('input[name=password]').fill(password);
  await submit(other);
  await other.getByText('Wrong login or password.').waitFor();
  await shot('users-removed-signin', other);
});
