// Sign-in with a local account: a wrong password and an unknown login get the same single
// generic message and no session; the right password opens the console; sign-out ends it.
import { scenario, base, env, submit, signOut, assert } from './lib.mjs';

const generic = 'Wrong login or password.';

await scenario('signin', async ({ context, page, shot }) => {
  await page.goto(base() + '/console/');
  await page.waitForURL(/\/oauth\/authorize/);
  await page.locator('input[name=login]').waitFor();
  await shot('signin');

  const attempt = async (login, password) => {
    await page.locator('input[name=login]').fill(login);
    await page.locator('input[name=password]').fill(password);
    await submit(page);
    await page.getByText(generic).first().waitFor();
    const messages = await page.getByText(generic).count();
    assert(messages === 1, `${messages} copies of the message for ${login}, want exactly one`);
    const text = await page.locator('body').innerText();
    assert(!/unknown|not found|no such|does not exist/i.test(text), `the page hints whether ${login} exists:\n${text}`);
    return text;
  };
  const wrong = await attempt(env('SORTIE_ADMIN_LOGIN'), 'not-the-password-at-all');
  await shot('signin-wrong-password');
  const unknown = await attempt('nobody-here', 'not-the-password-at-all');
  assert(wrong === unknown, `a wrong password and an unknown login read differently:\n${wrong}\n---\n${unknown}`);
  const cookies = (await context.cookies()).map((c) => c.name);
  assert(!cookies.includes('sortie_session'), `a failed sign-in set a session cookie: ${cookies}`);

  // Attempts are rate-limited per login and address: a login that keeps failing is stopped
  // with its own message (the same whether the login exists or not).
  const limited = 'Too many sign-in attempts; wait a minute and try again.';
  let tries = 0;
  for (; tries < 10; tries++) {
    await page.locator('input[name=login]').fill('ghost');
    await page.locator('input[name=password]').fill('still not the password');
    await submit(page);
    await page.getByText(generic).or(page.getByText(limited)).first().waitFor();
    if (await page.getByText(limited).count()) break;
  }
  assert(tries >= 2 && tries < 10, `the rate limit stopped "ghost" after ${tries} failures, want after a few (not at once, not never)`);
  assert(await page.getByText(generic).count() === 0, 'the rate-limited page also shows the wrong-password message');
  await shot('signin-rate-limited');

  await page.locator('input[name=login]').fill(env('SORTIE_ADMIN_LOGIN'));
  await page.locator('input[name=password]').fill(env('SORTIE_ADMIN_PASSWORD'));
  await submit(page);
  await page.waitForURL((u) => u.pathname.startsWith('/console/') && !u.pathname.startsWith('/console/callback'));
  await page.locator('h1').first().waitFor();
  const session = (await context.cookies()).find((c) => c.name === 'sortie_session');
  assert(session && session.httpOnly && session.sameSite === 'Strict', `session cookie ${JSON.stringify(session)}, want HttpOnly SameSite=Strict`);
  const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }));
  assert(!stored.includes(session.value), 'the session token is in localStorage');
  await page.getByTestId('principal-name').filter({ hasText: env('SORTIE_ADMIN_LOGIN') }).waitFor();
  await shot('home');

  const csrf = (await context.cookies()).find((c) => c.name === 'sortie_csrf');
  assert(csrf && !csrf.httpOnly, `CSRF cookie ${JSON.stringify(csrf)}, want one readable by the page`);
  await signOut(page);
  const after = (await context.cookies()).find((c) => c.name === 'sortie_session');
  assert(!after, 'the session cookie is still set after sign-out');
  // The old session cookie no longer opens the console.
  await context.addCookies([session, csrf]);
  const res = await page.request.post(base() + '/sortie.identity.v1.IdentityService/WhoAmI', {
    headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf.value }, data: {},
  });
  assert(res.status() === 401, `WhoAmI with the signed-out session's cookies: ${res.status()}, want 401`);

  // Signing in again right after signing out (seconds after the last sign-in) is no sign-in
  // loop: it lands in the console.
  await context.clearCookies();
  await page.goto(base() + '/console/');
  await page.waitForURL(/\/oauth\/authorize/);
  await page.locator('input[name=login]').fill(env('SORTIE_ADMIN_LOGIN'));
  await page.locator('input[name=password]').fill(env('SORTIE_ADMIN_PASSWORD'));
  await submit(page);
  await page.getByTestId('principal-name').filter({ hasText: env('SORTIE_ADMIN_LOGIN') }).waitFor();
});
