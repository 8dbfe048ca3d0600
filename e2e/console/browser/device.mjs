// Device login: the code `sortie login` printed is approved in the console at
// /console/device by the signed-in admin.
import { scenario, env, adminSignIn, heading, shown, assert } from './lib.mjs';

const code = env('USER_CODE');

await scenario('device', async ({ page, shot }) => {
  await adminSignIn(page, `/console/device?user_code=${encodeURIComponent(code)}`);
  await heading(page, 'Sign in a device');
  const value = await shown(page.getByTestId('user-code'));
  assert(value === code, `the device page shows code ${value}, want ${code}`);
  await shot('device');
  await page.getByRole('button', { name: 'Approve' }).click();
  await page.getByText('The device is signed in').waitFor();
  await shot('device-approved');
});
