// Agents: the connected cluster with its versions and the install command; a second agent
// appears when it connects and goes when it disconnects, with no reload of the page.
import { scenario, env, adminSignIn, heading, step, until, assert, log } from './lib.mjs';

const edge = env('SORTIE_EDGE_ACCOUNT');

await scenario('agents', async ({ page, shot }) => {
  await adminSignIn(page, '/console/agents');
  await heading(page, 'Agents');
  const row = page.getByTestId('agent-row').filter({ hasText: env('SORTIE_ACCOUNT') });
  await row.first().waitFor();
  const text = await row.first().innerText();
  assert(/v1\.\d+/.test(text), `the agent row does not show a Kubernetes version: ${text}`);
  assert((await page.locator('body').innerText()).includes('/kubernetes/agent/manifest'), 'no install command with the manifest route on the Agents page');
  await shot('agents');

  // Anything that reloads the document resets this marker.
  await page.evaluate(() => { window.__sortieNoReload = true; });
  const edgeRow = page.getByTestId('agent-row').filter({ hasText: edge });
  assert((await edgeRow.count()) === 0, `${edge} is listed before it connects`);
  await step('start-agent');
  await edgeRow.first().waitFor();
  await shot('agents-second-connected');
  await step('stop-agent');
  await edgeRow.first().waitFor({ state: 'detached' });
  await shot('agents-second-disconnected');
  assert(await page.evaluate(() => window.__sortieNoReload === true), 'the page was reloaded');
  assert(await row.count() > 0, `${env('SORTIE_ACCOUNT')} went away too`);
  log('the second agent came and went without a reload');
});
