import { useEffect, useState } from "react";
import { identity, errorText } from "../api";
import type { GetInvitationResponse } from "../gen/sortie/identity/v1/identity_pb";
import { Button, ErrorMessage, Field, Notice, inputClass, submitting, useAction } from "../components/ui";
import { AuthFrame } from "./AuthFrame";
import { startSignIn } from "../auth";
import { when } from "../time";

function fragmentToken(): string {
  return new URLSearchParams(location.hash.slice(1)).get("token") ?? "";
}

/** The invitation link: /console/invite#token=<secret>. The secret never leaves the fragment but for the API calls. */
export function InvitePage() {
  // Read once (the fragment is cleared after accepting) and again when another link is opened
  // in this tab.
  const [token, setToken] = useState(fragmentToken);
  const [opened, setOpened] = useState(0);
  const [inv, setInv] = useState<GetInvitationResponse | null>(null);
  const [loadError, setLoadError] = useState("");
  const [name, setName] = useState("");
  const [password, setPassword] = useState("");
  const [repeat, setRepeat] = useState("");
  const [accepted, setAccepted] = useState("");
  const accept = useAction(async () => {
    if (!inv) return;
    if (!inv.existingUser) {
      if (password.length < 12) throw new Error("The password must have at least 12 characters.");
      if (password !== repeat) throw new Error("The passwords differ.");
    }
    const res = await identity.acceptInvitation({ token, name: inv.existingUser ? "" : name, password });
    history.replaceState(null, "", location.pathname);
    setAccepted(res.login);
  });

  useEffect(() => {
    const onHash = () => {
      const t = fragmentToken();
      if (t) {
        setInv(null);
        setAccepted("");
        setLoadError("");
        setToken(t);
        setOpened((n) => n + 1);
      }
    };
    addEventListener("hashchange", onHash);
    return () => removeEventListener("hashchange", onHash);
  }, []);

  useEffect(() => {
    if (!token) {
      setLoadError("This link has no invitation token. Open the complete link you were sent.");
      return;
    }
    identity.getInvitation({ token }).then(setInv, (err) => setLoadError(errorText(err)));
  }, [token, opened]);

  return (
    <AuthFrame title="Accept the invitation">
      {loadError ? (
        <ErrorMessage error={loadError} />
      ) : !inv ? (
        <p className="text-sm text-slate-500">Loading the invitation…</p>
      ) : accepted ? (
        <div className="space-y-4">
          <Notice>
            You are now a member of {inv.envName} as <strong>{accepted}</strong>.
          </Notice>
          <Button variant="primary" className="w-full" onClick={() => void startSignIn("/console/")}>
            Sign in
          </Button>
        </div>
      ) : (
        <form className="space-y-4" onSubmit={submitting(accept.run)}>
          <p className="text-sm text-slate-600">
            <strong>{inv.email}</strong> is invited to <strong>{inv.envName}</strong> of {inv.orgName} with the roles{" "}
            {inv.roles.join(", ")}. The link works until {when(inv.expireTime)}.
          </p>
          {inv.existingUser ? (
            <Field label="Your current password" hint="You already have an account: accepting adds this environment to it.">
              <input type="password" autoComplete="current-password" className={inputClass} value={password} onChange={(e) => setPassword(e.target.value)} required />
            </Field>
          ) : (
            <>
              <Field label="Your name">
                <input className={inputClass} value={name} onChange={(e) => setName(e.target.value)} autoComplete="name" />
              </Field>
              <Field label="Password" hint="At least 12 characters.">
                <input type="password" autoComplete="new-password" className={inputClass} value={password} onChange={(e) => setPassword(e.target.value)} required />
              </Field>
              <Field label="Repeat the password">
                <input type="password" autoComplete="new-password" className={inputClass} value={repeat} onChange={(e) => setRepeat(e.target.value)} required />
              </Field>
            </>
          )}
          <ErrorMessage error={accept.error} />
          <Button type="submit" variant="primary" className="w-full" disabled={accept.busy}>
            Accept invitation
          </Button>
        </form>
      )}
    </AuthFrame>
  );
}
