// Device login: the code `sortie login` printed is approved in the console at
// /console/device by the signed-in admin.
import { scenario, env, adminSignIn, assert } from './lib.mjs';

const code = env('USER_CODE');

await scenario('device', async ({ page, shot }) => {
  await adminSignIn(page, `/console/device?user_code=${encodeURIComponent(code)}`);
  assert(page.url().includes('/console/device'), `sign-in did not come back to the device page: ${page.url()}`);
  const shown = page.getByTestId('user-code');
  await shown.waitFor();
  const value = ((await shown.inputValue().catch(() => null)) ?? (await shown.innerText())).trim();
  assert(value === code, `the device page shows code ${value}, want ${code}`);
  await shot('device');
  await page.getByRole('button', { name: /approve|allow|confirm/i }).first().click();
  await page.getByText(/approved|signed in|return to|go back to/i).first().waitFor();
  await shot('device-approved');
});
