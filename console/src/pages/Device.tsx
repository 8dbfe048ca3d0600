import { useState } from "react";
import { useSearchParams } from "react-router";
import { identity } from "../api";
import { useSession } from "../session";
import { normaliseUserCode } from "../devicecode";
import { Button, Card, ErrorMessage, Field, Notice, PageHeader, inputClass, useAction } from "../components/ui";

export function DevicePage() {
  const s = useSession();
  const [params] = useSearchParams();
  const [code, setCode] = useState(normaliseUserCode(params.get("user_code") ?? ""));
  const [env, setEnv] = useState(s.principal.envId);
  const [done, setDone] = useState<"approved" | "denied" | null>(null);
  const envs = s.environments.length ? s.environments : [];

  const answer = useAction(async (deny: boolean) => {
    if (!/^[A-Z0-9]{4}-[A-Z0-9]{4}$/.test(code)) throw new Error("Enter the code the terminal shows, like ABCD-EFGH.");
    await identity.approveDevice({ userCode: code, envId: env, deny });
    setDone(deny ? "denied" : "approved");
  });

  return (
    <>
      <PageHeader title="Sign in a device" description="A terminal (sortie login) asks to sign in as you." />
      <Card className="max-w-lg">
        <div className="space-y-4 p-6">
          {done ? (
            <Notice>
              {done === "approved"
                ? "The device is signed in. You can close this page and go back to the terminal."
                : "The sign-in was denied. The terminal gets no token."}
            </Notice>
          ) : (
            <>
              <p className="text-sm text-slate-600">
                Check that the code below is the one your terminal shows. Approve only a sign-in you started yourself.
              </p>
              <Field label="Code">
                <input
                  data-testid="user-code"
                  className={`${inputClass} font-mono text-lg tracking-widest`}
                  value={code}
                  onChange={(e) => setCode(normaliseUserCode(e.target.value))}
                  placeholder="ABCD-EFGH"
                  autoComplete="off"
                  maxLength={9}
                />
              </Field>
              {envs.length > 1 && (
                <Field label="Environment">
                  <select className={inputClass} value={env} onChange={(e) => setEnv(e.target.value)}>
                    {envs.map((e) => (
                      <option key={e.id} value={e.id}>
                        {e.name}
                      </option>
                    ))}
                  </select>
                </Field>
              )}
              {envs.length <= 1 && <p className="text-sm text-slate-600">Environment: <strong>{s.envName}</strong></p>}
              <ErrorMessage error={answer.error} />
              <div className="flex justify-end gap-2">
                <Button disabled={answer.busy} onClick={() => void answer.run(true)}>
                  Deny
                </Button>
                <Button variant="primary" disabled={answer.busy} onClick={() => void answer.run(false)}>
                  Approve
                </Button>
              </div>
            </>
          )}
        </div>
      </Card>
    </>
  );
}
