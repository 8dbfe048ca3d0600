// SSO: sign in through the external OIDC provider (Hydra with the test's login and consent
// pages); the person's group maps to a Sortie role, and the console acts on it: deployments
// are shown, credentials are not theirs to manage.
import { scenario, env, base, heading, nav, sessionCall, assert } from './lib.mjs';

const inConsole = (u) => u.href.startsWith(base() + '/console/') && !u.pathname.startsWith('/console/callback');

await scenario('sso', async ({ page, shot }) => {
  await page.goto(base() + '/console/deployments');
  await page.waitForURL(/\/oauth\/authorize/);
  await page.getByRole('link', { name: `Sign in with ${env('SSO_NAME')}` }).click();

  // The provider's login page (the test's handler in e2e/hydra).
  await page.waitForURL((u) => !u.href.startsWith(base()));
  await page.locator('input[name=login], input[name=email], input[name=username]').first().fill(env('SSO_EMAIL'));
  await page.locator('input[name=password]').fill(env('SSO_PASSWORD'));
  await shot('sso-provider-login');
  await page.locator('form button[type=submit], form input[type=submit]').first().click();
  // Consent, when the provider asks for it.
  const consent = page.getByRole('button', { name: /allow|accept|consent|grant/i });
  await Promise.race([consent.first().waitFor().then(() => consent.first().click()), page.waitForURL(inConsole)]);
  await page.waitForURL(inConsole);
  await heading(page, 'Deployments');
  await page.getByTestId('principal-name').filter({ hasText: env('SSO_EMAIL').toLowerCase() }).waitFor();
  await page.getByTestId('pipeline-row').first().waitFor();
  await shot('sso-signed-in');

  // The session's principal has the mapped role, and only it.
  const me = await sessionCall(page, '/sortie.identity.v1.IdentityService/WhoAmI');
  assert(me.status === 200, `WhoAmI with the SSO session: ${me.status} ${me.text}`);
  const p = me.body.principal;
  assert(p.type === 'PRINCIPAL_TYPE_USER' && JSON.stringify(p.roles) === JSON.stringify([env('SSO_ROLE')]), `the SSO session's principal: ${me.text}`);

  // The mapped role grants deployments, not credentials.
  assert(env('SSO_ROLE') === 'Deployments Full Access', 'the scenario expects the group to map to Deployments Full Access');
  await nav(page, 'Credentials');
  await page.getByText('Your roles cannot manage credentials').waitFor();
  assert(await page.getByTestId('credential-row').count() === 0, 'an SSO user with Deployments Full Access sees credentials');
  assert(await page.getByRole('button', { name: 'New credential' }).count() === 0, 'an SSO user with Deployments Full Access may create credentials');
});
