// Deployments: two canaries started through the API; the list filters them; the detail
// view follows each live to AWAITING_APPROVAL; one is approved in the console (SUCCEEDED),
// the other aborted (CANCELLED), each after a confirmation, and the history names who.
import { scenario, env, adminSignIn, heading, statusIs, step, until, assert } from './lib.mjs';

const approveID = env('APPROVE_PIPELINE');
const abortID = env('ABORT_PIPELINE');
const staleID = env('STALE_PIPELINE');

await scenario('deployments', async ({ page, shot }) => {
  await adminSignIn(page, '/console/deployments');
  await heading(page, 'Deployments');
  const rowOf = (id) => page.getByTestId('pipeline-row').filter({ hasText: id });
  await rowOf(approveID).waitFor();
  await rowOf(abortID).waitFor();
  await shot('deployments');

  // The application filter keeps the one application's rows.
  await page.getByTestId('application-filter').selectOption('web');
  await until('only web deployments listed', async () => (await rowOf(abortID).count()) === 0);
  for (const text of await page.getByTestId('pipeline-row').allInnerTexts()) assert(/^web\b/.test(text), `the web filter lists ${text}`);
  await page.getByTestId('application-filter').selectOption('');
  // The status filter: both are waiting for their approval; none has failed.
  await page.getByTestId('status-filter').selectOption('FAILED');
  await page.getByText('No deployment matches the filters').waitFor();
  await page.getByTestId('status-filter').selectOption('');
  await rowOf(abortID).waitFor();

  const decide = async (id, button, final, label) => {
    // Through the list's link: the console navigates without reloading.
    await rowOf(id).getByRole('link').first().click();
    await page.waitForURL((u) => u.pathname.endsWith(`/deployments/${encodeURIComponent(id)}`));
    await heading(page, 'Deployment of');
    await statusIs(page, 'AWAITING_APPROVAL');
    const target = page.getByTestId('target').filter({ hasText: 'prod' });
    await target.waitFor();
    assert(await target.getByTestId('weight').getAttribute('value') === '25', 'the target prod is not shown at weight 25');
    if (label === 'approved') await shot('deployment-awaiting-approval');
    await page.getByTestId(button).click();
    await page.getByTestId('confirm-button').waitFor();
    await shot(`deployment-confirm-${label}`);
    await page.getByTestId('confirm-button').click();
    await statusIs(page, final);
    assert(await page.getByTestId('approve-button').count() === 0, `an Approve button is still shown on a ${final} deployment`);
    assert(await page.getByTestId('abort-button').count() === 0, `an Abort button is still shown on a ${final} deployment`);
    const decision = page.getByTestId('decision-row');
    await decision.first().waitFor();
    const text = await decision.first().innerText();
    assert(text.includes(env('SORTIE_ADMIN_LOGIN')) && new RegExp(label === 'approved' ? 'approve' : 'abort', 'i').test(text),
      `the history does not show that admin ${label} it: ${text}`);
    await shot(`deployment-${label}`);
    await page.getByRole('link', { name: 'Deployments' }).first().click();
    await heading(page, 'Deployments');
  };
  await decide(approveID, 'approve-button', 'SUCCEEDED', 'approved');
  await decide(abortID, 'abort-button', 'CANCELLED', 'aborted');

  // A stale page: the pipeline moves on (approved elsewhere) while the Abort dialog is open.
  // Confirming gets a clear message, the page shows the real state, and nothing changes.
  await rowOf(staleID).getByRole('link').first().click();
  await heading(page, 'Deployment of cfg');
  await statusIs(page, 'AWAITING_APPROVAL');
  await page.getByTestId('abort-button').click();
  await page.getByTestId('confirm-button').waitFor();
  await step('approve-behind-the-page');
  await page.getByTestId('confirm-button').click();
  const dialog = page.getByRole('dialog');
  const message = await dialog.getByTestId('error-message').innerText();
  assert(message.trim().length > 0, 'aborting a pipeline that moved on shows no message');
  await shot('deployment-stale-abort');
  await dialog.getByRole('button', { name: 'Close' }).click();
  await statusIs(page, 'SUCCEEDED');
  await page.getByTestId('decision-row').first().waitFor();
  assert(await page.getByTestId('decision-row').count() === 1, 'the stale abort added a decision');
});
