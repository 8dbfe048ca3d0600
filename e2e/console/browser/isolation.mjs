// Environments: the admin creates environment B, switches to it and invites a person to B
// only; the person accepts the invitation in the browser, signs in and sees nothing of the
// admin's environment A: no agents, deployments, credentials or the environment itself.
import { scenario, env, base, adminSignIn, signIn, heading, nav, roleBox, shown, sessionCall, assert, log } from './lib.mjs';

const envB = env('ENV_B');
const email = env('INVITEE_EMAIL');
const password = env('INVITEE_PASS');
const aClientIDs = env('A_CLIENT_IDS').split('\n').filter(Boolean);

await scenario('isolation', async ({ page: admin, shot, person }) => {
  let page = admin;
  await adminSignIn(page, '/console/environments');
  await heading(page, 'Environments');
  await page.getByRole('button', { name: 'New environment' }).click();
  let dialog = page.getByRole('dialog');
  await dialog.getByLabel(/^Name/).fill(envB);
  await dialog.getByRole('button', { name: /create/i }).click();
  await shown(dialog.getByTestId('secret-value')); // B's own admin credential, shown once
  await dialog.getByRole('button', { name: 'Done' }).click();
  const rowB = page.getByTestId('env-row').filter({ hasText: envB });
  await rowB.waitFor();
  await shot('environments');
  await rowB.getByRole('button', { name: `Switch to ${envB}` }).click();
  await page.getByTestId('current-environment').filter({ hasText: envB }).waitFor();

  await nav(page, 'Users');
  await page.getByRole('button', { name: 'Invite user' }).click();
  dialog = page.getByRole('dialog');
  await dialog.getByLabel('Email').fill(email);
  await roleBox(dialog, 'Organization Admin').check();
  await dialog.getByRole('button', { name: 'Create invitation' }).click();
  const link = await shown(dialog.getByTestId('invitation-link'));
  assert(link.startsWith(`${base()}/console/invite#token=`), `the invitation link is not ${base()}/console/invite#token=...`);
  await shot('users-invitation-link');
  await dialog.getByRole('button', { name: 'Done' }).click();
  await page.getByTestId('invitation-row').filter({ hasText: email }).waitFor();
  await shot('users-invited');

  // The invitee, in a browser of their own.
  ({ page } = await person());
  await page.goto(link);
  await heading(page, 'Accept the invitation');
  await page.getByText(envB).first().waitFor();
  await page.getByLabel('Your name').fill('Bea');
  await page.getByLabel(/^Password/).fill(password);
  await page.getByLabel('Repeat the password').fill(password);
  await shot('invitation', page);
  await page.getByRole('button', { name: 'Accept invitation' }).click();
  await page.getByText(`You are now a member of ${envB}`).waitFor();
  const login = (await page.locator('strong').last().innerText()).trim();
  log(`accepted the invitation as ${login}`);
  assert(!page.url().includes('token='), 'the invitation token stays in the address bar');
  // The same link again is refused.
  await page.goto('about:blank');
  await page.goto(link);
  await page.getByTestId('error-message').filter({ hasText: 'already used or has expired' }).waitFor();
  await shot('invitation-reused', page);

  await signIn(page, login, password, '/console/agents');
  await heading(page, 'Agents');
  await page.getByTestId('current-environment').filter({ hasText: envB }).waitFor();
  // Lists arrive over server streams: give A's rows time to show, which they must not.
  await page.getByText('No agent is connected').waitFor();
  await page.waitForTimeout(1500);
  assert(await page.getByTestId('agent-row').count() === 0, 'the user of B sees agent rows');
  assert(!(await page.locator('main').innerText()).includes(env('A_AGENT_ACCOUNT')), `the user of B sees A's agent ${env('A_AGENT_ACCOUNT')}`);
  await shot('isolation-agents', page);

  await nav(page, 'Deployments');
  await page.getByText('No deployments yet').waitFor();
  await page.waitForTimeout(1500);
  assert(await page.getByTestId('pipeline-row').count() === 0, 'the user of B sees deployments');
  await shot('isolation-deployments', page);

  await nav(page, 'Credentials');
  await page.getByTestId('credential-row').first().waitFor(); // B's own admin credential
  await page.waitForTimeout(1500);
  const creds = await page.locator('main').innerText();
  for (const id of aClientIDs) assert(!creds.includes(id), `the user of B sees A's credential ${id}`);
  await shot('isolation-credentials', page);

  // The server agrees, whatever the page shows: the session's own calls.
  const me = await sessionCall(page, '/sortie.identity.v1.IdentityService/WhoAmI');
  const listed = await sessionCall(page, '/sortie.identity.v1.IdentityService/ListCredentials');
  assert(me.status === 200 && listed.status === 200, `WhoAmI and ListCredentials as the user of B: ${me.status} ${me.text} ${listed.status} ${listed.text}`);
  assert(!me.text.includes(env('A_ENV_ID')), `the user of B is in A: ${me.text}`);
  for (const id of aClientIDs) assert(!listed.text.includes(id), `ListCredentials as the user of B returns A's ${id}`);

  // An Organization Admin sees the names of the organization's environments, but A is not
  // theirs to open: no Switch in the list or the user menu, and the server refuses it.
  await nav(page, 'Environments');
  await page.getByTestId('env-row').filter({ hasText: envB }).waitFor();
  const rowA = page.getByTestId('env-row').filter({ hasText: env('A_ENV_ID') });
  if (await rowA.count()) {
    assert(await rowA.getByRole('button').count() === 0, `the user of B can act on A from the Environments page: ${await rowA.innerText()}`);
  }
  await page.getByTestId('user-menu').click();
  assert(await page.getByRole('menuitem', { name: /default/ }).count() === 0, 'the user menu offers to switch to A');
  await page.keyboard.press('Escape');
  const sw = (await sessionCall(page, '/auth/environment', { envId: env('A_ENV_ID') })).status;
  assert(sw === 403, `switching the session of the user of B to A: ${sw}, want 403`);
  await shot('isolation-environments', page);
});
