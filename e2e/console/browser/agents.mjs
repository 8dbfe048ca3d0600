// Agents: the connected cluster with its versions and the install command; a second agent
// appears when it connects and goes when it disconnects, with no reload of the page.
import { scenario, env, base, adminSignIn, heading, step, assert, log } from './lib.mjs';

const edge = env('SORTIE_EDGE_ACCOUNT');

await scenario('agents', async ({ page, shot }) => {
  await adminSignIn(page, '/console/agents');
  await heading(page, 'Agents');
  const row = page.getByTestId('agent-row').filter({ has: page.getByTestId('agent-identifier').getByText(env('SORTIE_ACCOUNT'), { exact: true }) });
  await row.first().waitFor();
  const text = await row.first().innerText();
  assert(/v1\.\d+/.test(text), `the agent row does not show a Kubernetes version: ${text}`);
  const install = await page.getByTestId('install-command').innerText();
  assert(install.includes(`${base()}/kubernetes/agent/manifest`), `the install command does not use the manifest route: ${install}`);
  await shot('agents');

  // Anything that reloads the document resets this marker.
  await page.evaluate(() => { window.__sortieNoReload = true; });
  const edgeRow = page.getByTestId('agent-row').filter({ has: page.getByTestId('agent-identifier').getByText(edge, { exact: true }) });
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
