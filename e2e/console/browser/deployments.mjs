// Deployments: two canaries started through the API; the detail view follows each live to
// AWAITING_APPROVAL; one is approved in the console (SUCCEEDED), the other aborted
// (CANCELLED), each after a confirmation, and the history names who did it.
import { scenario, env, base, adminSignIn, heading, statusIs, assert } from './lib.mjs';

const approveID = env('APPROVE_PIPELINE');
const abortID = env('ABORT_PIPELINE');

await scenario('deployments', async ({ page, shot }) => {
  await adminSignIn(page, '/console/deployments');
  await heading(page, 'Deployments');
  for (const id of [approveID, abortID]) {
    await page.getByTestId('pipeline-row').filter({ has: page.locator(`a[href$="${id}"]`) })
      .or(page.getByTestId('pipeline-row').filter({ hasText: id })).first().waitFor();
  }
  await shot('deployments');

  const decide = async (id, button, final, label) => {
    await page.goto(`${base()}/console/deployments/${id}`);
    await page.locator('h1').first().waitFor();
    await statusIs(page, 'AWAITING_APPROVAL');
    const body = await page.locator('body').innerText();
    assert(body.includes('prod'), 'the detail view does not show the target prod');
    assert(/25\s*%/.test(body), 'the detail view does not show the current weight 25%');
    if (label === 'approved') await shot('deployment-awaiting-approval');
    await page.getByTestId(button).click();
    await page.getByTestId('confirm-button').waitFor();
    await shot(`deployment-confirm-${label}`);
    await page.getByTestId('confirm-button').click();
    await statusIs(page, final);
    await page.getByTestId(button).waitFor({ state: 'hidden' });
    const history = await page.locator('body').innerText();
    assert(/admin/.test(history) && new RegExp(label === 'approved' ? 'approv' : 'abort', 'i').test(history),
      `the history does not show that admin ${label} it:\n${history}`);
    await shot(`deployment-${label}`);
  };
  await decide(approveID, 'approve-button', 'SUCCEEDED', 'approved');
  await decide(abortID, 'abort-button', 'CANCELLED', 'aborted');
});
