// The signed-in principal: WhoAmI at start, sign-in when the server says Unauthenticated,
// the environment switch and sign-out. The session is the server's HttpOnly cookie; nothing
// of it is kept here beyond what WhoAmI answered.
import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState, type ReactNode } from "react";
import { Code, ConnectError } from "@connectrpc/connect";
import { identity, postAuth, errorText } from "./api";
import { clearSignInLoop, signInLooping, startSignIn } from "./auth";
import { PrincipalType, type Environment, type Principal } from "./gen/sortie/identity/v1/identity_pb";

export interface Session {
  principal: Principal;
  environments: Environment[];
  /** increases on every environment switch: pages keyed on it reload their data. */
  epoch: number;
  hasScope: (s: string) => boolean;
  isUser: boolean;
  envName: string;
  switchEnvironment: (envId: string) => Promise<void>;
  signOut: () => Promise<void>;
  /** re-checks the session after a stream said Unauthenticated; false when signing in again. */
  recheck: () => Promise<boolean>;
  refresh: () => Promise<void>;
}

const Ctx = createContext<Session | null>(null);

export function useSession(): Session {
  const s = useContext(Ctx);
  if (!s) throw new Error("useSession outside SessionProvider");
  return s;
}

type Boot = { kind: "loading" } | { kind: "error"; message: string } | { kind: "ready" };

export function SessionProvider({ children, fallback }: { children: ReactNode; fallback: (b: Boot) => ReactNode }) {
  const [boot, setBoot] = useState<Boot>({ kind: "loading" });
  const [principal, setPrincipal] = useState<Principal | null>(null);
  const [environments, setEnvironments] = useState<Environment[]>([]);
  const [epoch, setEpoch] = useState(0);
  const signingIn = useRef(false);

  const signIn = useCallback(() => {
    if (signingIn.current) return;
    signingIn.current = true;
    if (signInLooping()) {
      signingIn.current = false;
      setBoot({
        kind: "error",
        message: "Signing in did not start a session: the browser may refuse the server's cookies. Reload the page to try again.",
      });
      return;
    }
    void startSignIn(location.pathname + location.search + location.hash);
  }, []);

  const load = useCallback(async (): Promise<boolean> => {
    try {
      const res = await identity.whoAmI({});
      if (!res.principal) throw new Error("the server sent no principal");
      // WhoAmI names the environments the caller may switch to (a machine's own included), so
      // a user without manage:tenant still sees the environment's name.
      setPrincipal(res.principal);
      setEnvironments(res.environments);
      setBoot({ kind: "ready" });
      clearSignInLoop();
      return true;
    } catch (err) {
      if (err instanceof ConnectError && err.code === Code.Unauthenticated) {
        signIn();
        return false;
      }
      setBoot((b) => (b.kind === "ready" ? b : { kind: "error", message: errorText(err) }));
      // Anything else keeps a running console going: its streams retry on their own.
      return true;
    }
  }, [signIn]);

  useEffect(() => {
    void load();
  }, [load]);

  // Keep the session renewed while the console is open: the server renews the cookie on a
  // request made in the second half of the token's life, and streams alone make none.
  useEffect(() => {
    const t = setInterval(() => {
      if (document.visibilityState === "visible") void load();
    }, 120_000);
    return () => clearInterval(t);
  }, [load]);

  const value = useMemo<Session | null>(() => {
    if (!principal) return null;
    const scopes = new Set(principal.scopes);
    return {
      principal,
      environments,
      epoch,
      hasScope: (s) => scopes.has(s),
      isUser: principal.type === PrincipalType.USER,
      envName: environments.find((e) => e.id === principal.envId)?.name ?? principal.envId,
      switchEnvironment: async (envId) => {
        await postAuth("/auth/environment", { envId });
        await load();
        setEpoch((e) => e + 1);
      },
      signOut: async () => {
        await postAuth("/auth/signout");
        // Signing in again at once is not a sign-in loop.
        clearSignInLoop();
        location.assign("/console/");
      },
      recheck: load,
      refresh: async () => {
        await load();
      },
    };
  }, [principal, environments, epoch, load]);

  if (boot.kind !== "ready" || !value) return <>{fallback(boot)}</>;
  return <Ctx.Provider value={value}>{children}</Ctx.Provider>;
}

