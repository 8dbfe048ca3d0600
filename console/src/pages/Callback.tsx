import { useEffect, useRef, useState } from "react";
import { httpMessage } from "../api";
import { CLIENT_ID, markSignedIn, redirectURI, safeReturn, startSignIn, takePending } from "../auth";
import { Button, ErrorMessage } from "../components/ui";
import { AuthFrame } from "./AuthFrame";

/** /console/callback: trades the authorization code for the session cookies. */
export function CallbackPage() {
  const [error, setError] = useState("");
  const once = useRef(false);
  useEffect(() => {
    if (once.current) return;
    once.current = true;
    void (async () => {
      const q = new URLSearchParams(location.search);
      const pending = takePending();
      if (q.get("error")) {
        setError(q.get("error_description") || q.get("error") || "Sign-in failed.");
        return;
      }
      const code = q.get("code");
      if (!pending || !code) {
        setError("This sign-in was not started here or has already been used. Sign in again.");
        return;
      }
      if (q.get("state") !== pending.state) {
        setError("The sign-in answer does not match the sign-in this browser started. Sign in again.");
        return;
      }
      const res = await fetch("/oauth/token", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({
          grant_type: "authorization_code",
          client_id: CLIENT_ID,
          code,
          redirect_uri: redirectURI(),
          code_verifier: pending.verifier,
        }),
      }).catch(() => null);
      if (!res) {
        setError("The server cannot be reached.");
        return;
      }
      if (!res.ok) {
        setError(await httpMessage(res));
        return;
      }
      markSignedIn();
      location.replace(safeReturn(pending.returnTo));
    })();
  }, []);
  return (
    <AuthFrame title={error ? "Sign-in failed" : "Signing in…"}>
      {error ? (
        <div className="space-y-4">
          <ErrorMessage error={error} />
          <Button variant="primary" className="w-full" onClick={() => void startSignIn("/console/")}>
            Sign in again
          </Button>
        </div>
      ) : (
        <p className="text-sm text-slate-500">One moment.</p>
      )}
    </AuthFrame>
  );
}
