// The caller's identity snapshot (credentials, users, invitations, environments), live from
// IdentityService.WatchIdentity. A server without WatchIdentity gets the same snapshot from
// the List procedures every few seconds instead.
import { useState } from "react";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { identity } from "./api";
import { useSession } from "./session";
import { sleep, useStream, type StreamState } from "./stream";
import { WatchIdentityResponseSchema, type WatchIdentityResponse } from "./gen/sortie/identity/v1/identity_pb";

// Changes made from this page wake the fallback poll at once.
const changes = new EventTarget();

/** Tells the identity views that something changed (a credential created, a user removed). */
export function pokeIdentity(): void {
  changes.dispatchEvent(new Event("change"));
}

function nextChange(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      changes.removeEventListener("change", done);
      resolve();
    };
    changes.addEventListener("change", done);
    void sleep(ms, signal).then(done);
  });
}

/** The list, or null (with its name in missing) when this server does not offer it. */
async function optional<T>(name: string, missing: Set<string>, p: Promise<T>): Promise<T | null> {
  try {
    return await p;
  } catch (err) {
    if (err instanceof ConnectError && err.code === Code.Unimplemented) {
      missing.add(name);
      return null;
    }
    if (err instanceof ConnectError && err.code === Code.PermissionDenied) return null;
    throw err;
  }
}

export function useIdentity(): StreamState & { snapshot: WatchIdentityResponse | null; missing: Set<string> } {
  const s = useSession();
  const [snapshot, setSnapshot] = useState<WatchIdentityResponse | null>(null);
  const [missing, setMissing] = useState<Set<string>>(new Set());
  const state = useStream(
    async (signal, live) => {
      try {
        for await (const snap of identity.watchIdentity({}, { signal })) {
          live();
          setSnapshot(snap);
        }
        return;
      } catch (err) {
        if (!(err instanceof ConnectError && err.code === Code.Unimplemented)) throw err;
      }
      for (;;) {
        const gone = new Set<string>();
        const [creds, users, invs, envs] = await Promise.all([
          s.hasScope("manage:credentials") ? optional("credentials", gone, identity.listCredentials({}, { signal })) : null,
          s.hasScope("manage:tenant") ? optional("users", gone, identity.listUsers({}, { signal })) : null,
          s.hasScope("manage:tenant") ? optional("invitations", gone, identity.listInvitations({}, { signal })) : null,
          optional("environments", gone, identity.listEnvironments({}, { signal })),
        ]);
        live();
        setMissing(gone);
        setSnapshot(
          create(WatchIdentityResponseSchema, {
            credentials: creds?.credentials ?? [],
            users: users?.users ?? [],
            invitations: invs?.invitations ?? [],
            environments: envs?.environments ?? [],
            memberships: s.environments,
          }),
        );
        await nextChange(3000, signal);
        if (signal.aborted) return;
      }
    },
    [s.epoch],
  );
  return { ...state, snapshot, missing };
}

/** The roles whose every scope the caller holds: the only ones it may grant. */
export function useGrantableRoles(): { roles: { name: string; scopes: string[] }[]; error: unknown } {
  const s = useSession();
  const [roles, setRoles] = useState<{ name: string; scopes: string[] }[]>([]);
  const [error, setError] = useState<unknown>(null);
  useStream(
    async (signal, live) => {
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
