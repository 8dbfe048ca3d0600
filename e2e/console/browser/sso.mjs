// SSO: sign in through the external OIDC provider (Hydra with the test's login and consent
// pages); the person's group maps to a Sortie role, which the console shows.
import { scenario, env, base, assert } from './lib.mjs';

await scenario('sso', async ({ page, shot }) => {
  await page.goto(base() + '/console/');
  await page.waitForURL(/\/oauth\/authorize/);
  const button = page.getByRole('link', { name: `Sign in with ${env('SSO_NAME')}` })
    .or(page.getByRole('button', { name: `Sign in with ${env('SSO_NAME')}` }));
  await button.first().click();

  // The provider's login page (written by the test harness, e2e/hydra).
  await page.waitForURL((u) => !u.href.startsWith(base()));
  const login = page.locator('input[name=login], input[name=email], input[name=username]').first();
  await login.fill(env('SSO_LOGIN'));
  await page.locator('input[name=password]').fill(env('SSO_PASSWORD'));
  await shot('sso-provider-login');
  await page.locator('form button[type=submit], form input[type=submit]').first().click();
  // Consent, when the provider asks for it.
  const consent = page.getByRole('button', { name: /allow|accept|consent|grant/i });
  await Promise.race([
    consent.first().waitFor().then(() => consent.first().click()),
    page.waitForURL((u) => u.href.startsWith(base() + '/console/') && !u.pathname.startsWith('/console/callback')),
  ]);
  await page.waitForURL((u) => u.href.startsWith(base() + '/console/') && !u.pathname.startsWith('/console/callback'));
  await page.locator('h1').first().waitFor();
  await page.getByText(env('SSO_ROLE')).first().waitFor();
  const text = await page.locator('body').innerText();
  assert(text.toLowerCase().includes(env('SSO_LOGIN').toLowerCase()) || text.includes(env('SSO_NAME')), `the console does not show who signed in:\n${text}`);
  await shot('sso-signed-in');
});
