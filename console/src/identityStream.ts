// The caller's identity snapshot (credentials, users, invitations, environments), live from
// IdentityService.WatchIdentity: the server sends a new snapshot whenever one changes, also
// after this page's own changes.
import { useState } from "react";
import { identity } from "./api";
import { useSession } from "./session";
import { useStream, type StreamState } from "./stream";
import { type WatchIdentityResponse } from "./gen/sortie/identity/v1/identity_pb";

export function useIdentity(): StreamState & { snapshot: WatchIdentityResponse | null } {
  const s = useSession();
  const [snapshot, setSnapshot] = useState<WatchIdentityResponse | null>(null);
  const state = useStream(
    async (signal, live) => {
      for await (const snap of identity.watchIdentity({}, { signal })) {
        live();
        setSnapshot(snap);
      }
    },
    [s.epoch],
  );
  return { ...state, snapshot };
}

/** The roles whose every scope the caller holds: the only ones it may grant. */
export function useGrantableRoles(): { roles: { name: string; scopes: string[] }[]; error: unknown } {
  const s = useSession();
  const [roles, setRoles] = useState<{ name: string; scopes: string[] }[]>([]);
  const [error, setError] = useState<unknown>(null);
  useStream(
    async (signal, live) => {
      // ListRoles needs manage:credentials; without it there is nothing to grant anyway.
      if (!s.hasScope("manage:credentials")) {
        live();
        setRoles([]);
        return new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve()));
      }
      try {
        const res = await identity.listRoles({}, { signal });
        live();
        setRoles(res.roles.filter((r) => r.scopes.every((sc) => s.hasScope(sc))).map((r) => ({ name: r.name, scopes: r.scopes })));
        setError(null);
      } catch (err) {
        setError(err);
        throw err;
      }
      await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve()));
    },
    [s.epoch],
  );
  return { roles, error };
}
