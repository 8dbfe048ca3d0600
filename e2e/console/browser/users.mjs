// Users: the admin sees the people of the environment, with their roles.
import { scenario, env, adminSignIn, heading, assert } from './lib.mjs';

await scenario('users', async ({ page, shot }) => {
  await adminSignIn(page, '/console/users');
  await heading(page, 'Users');
  const admin = page.getByTestId('user-row').filter({ hasText: env('SORTIE_ADMIN_LOGIN') });
  await admin.first().waitFor();
  assert((await admin.first().innerText()).includes('Organization Admin'), 'the admin row does not show the role Organization Admin');
  await shot('users');
});
