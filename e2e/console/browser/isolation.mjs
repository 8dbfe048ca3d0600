// Environments: the admin creates environment B, switches to it and invites a person to B
// only; the person accepts the invitation in the browser, signs in and sees nothing of the
// admin's environment A: no agents, deployments, credentials or the environment itself.
import { scenario, env, base, adminSignIn, signIn, heading, nav, assert, log } from './lib.mjs';

const envB = env('ENV_B');
const email = env('INVITEE_EMAIL');
const password = env('INVITEE_PASS');
const lines = (name) => env(name).split('\n').filter(Boolean);

await scenario('isolation', async ({ context, page, shot }) => {
  await adminSignIn(page, '/console/environments');
  await heading(page, 'Environments');
  await page.getByRole('button', { name: /create|new environment/i }).first().click();
  const form = page.locator('form').filter({ has: page.getByLabel(/name/i) }).last();
  await form.getByLabel(/name/i).first().fill(envB);
  await form.getByRole('button', { name: /create/i }).last().click();
  const rowB = page.getByTestId('env-row').filter({ hasText: envB });
  await rowB.first().waitFor();
  await shot('environments');
  await rowB.first().getByRole('button', { name: /switch|use|select|open/i }).click();
  await page.getByText(envB).first().waitFor();

  await nav(page, 'Users');
  await page.getByRole('button', { name: /invite/i }).first().click();
  const invite = page.locator('form').filter({ has: page.getByLabel(/e-?mail/i) }).last();
  await invite.getByLabel(/e-?mail/i).first().fill(email);
  const role = invite.getByRole('checkbox', { name: 'Organization Admin', exact: true });
  if (await role.count()) await role.check();
  else await invite.locator('select').first().selectOption({ label: 'Organization Admin' });
  await invite.getByRole('button', { name: /invite|send|create/i }).last().click();
  const linkRE = /https?:\/\/\S+\/console\/invite#token=[A-Za-z0-9_\-.~%]+/;
  let link = '';
  await page.waitForFunction((re) => new RegExp(re).test(document.body.innerText + [...document.querySelectorAll('input')].map((i) => i.value).join(' ')), linkRE.source);
  link = await page.evaluate((re) => (document.body.innerText + ' ' + [...document.querySelectorAll('input')].map((i) => i.value).join(' ')).match(new RegExp(re))[0], linkRE.source);
  assert(link.startsWith(base()), `the invitation link ${link.split('#')[0]} is not on ${base()}`);
  await page.getByTestId('invitation-row').filter({ hasText: email }).first().waitFor();
  await shot('users-invited');

  await page.getByRole('button', { name: /done|close|dismiss/i }).first().click().catch(() => {});
  await page.getByRole('button', { name: /sign out/i }).first().click();
  await page.waitForURL(/\/oauth\/authorize|sign/i);

  // The invitee, in the same browser after the admin signed out.
  await page.goto(link);
  await page.getByText(envB).first().waitFor();
  const name = page.getByLabel(/^name/i);
  if (await name.count()) await name.first().fill('Bea');
  const pw = page.getByLabel(/password/i);
  for (let i = 0; i < (await pw.count()); i++) await pw.nth(i).fill(password);
  await shot('invitation');
  await page.getByRole('button', { name: /accept|join|create account/i }).first().click();
  await page.getByText(/accepted|welcome|sign in/i).first().waitFor();
  log(`accepted the invitation: ${page.url()}`);

  if (!page.url().includes('/console/') || (await page.locator('input[name=password]').count())) {
    await context.clearCookies();
    await signIn(page, email, password, '/console/agents');
  } else {
    await page.goto(base() + '/console/agents');
  }
  await heading(page, 'Agents');
  await page.getByText(envB).first().waitFor();
  await page.waitForTimeout(1500); // the lists arrive over streams: give A's rows a chance to show (they must not)
  assert((await page.getByTestId('agent-row').count()) === 0, 'the user of B sees agent rows');
  assert(!(await page.locator('body').innerText()).includes(env('A_AGENT_ACCOUNT')), `the user of B sees A's agent ${env('A_AGENT_ACCOUNT')}`);
  await shot('isolation-agents');

  await nav(page, 'Deployments');
  await page.waitForTimeout(1500);
  assert((await page.getByTestId('pipeline-row').count()) === 0, 'the user of B sees deployments');
  await shot('isolation-deployments');

  await nav(page, 'Credentials');
  await page.waitForTimeout(1500);
  const credText = await page.locator('main').or(page.locator('body')).first().innerText();
  for (const id of lines('A_CLIENT_IDS')) assert(!credText.includes(id), `the user of B sees A's credential ${id}`);
  await shot('isolation-credentials');

  // The server agrees, whatever the page shows: the session's own calls.
  const whoami = await page.evaluate(async () => {
    const csrf = document.cookie.split('; ').find((c) => c.startsWith('sortie_csrf='))?.split('=')[1] ?? '';
    const call = async (proc) => {
      const r = await fetch(`/sortie.identity.v1.IdentityService/${proc}`, {
        method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf }, body: '{}',
      });
      return { status: r.status, body: await r.json() };
    };
    return { me: await call('WhoAmI'), creds: await call('ListCredentials') };
  });
  assert(whoami.me.status === 200, `WhoAmI as the user of B: ${JSON.stringify(whoami.me)}`);
  const me = JSON.stringify(whoami.me.body);
  assert(!me.includes(env('A_ENV_ID')), `the user of B is in A: ${me}`);
  for (const id of lines('A_CLIENT_IDS')) assert(!JSON.stringify(whoami.creds.body).includes(id), `ListCredentials as the user of B returns A's ${id}`);

  await nav(page, 'Environments');
  await page.getByTestId('env-row').filter({ hasText: envB }).first().waitFor();
  const envs = await page.getByTestId('env-row').allInnerTexts();
  assert(envs.length === 1, `the user of B sees environments ${JSON.stringify(envs)}, want only ${envB}`);
});
