import { useState } from "react";
import { identity } from "../api";
import { useSession } from "../session";
import { useGrantableRoles, useIdentity } from "../identityStream";
import type { Credential } from "../gen/sortie/identity/v1/identity_pb";
import { Button, Card, Confirm, CreateDialog, EmptyState, ErrorMessage, Field, LivePageHeader, NotPermitted, RolePicker, SecretBox, Table, Tag, inputClass, td } from "../components/ui";
import { when } from "../time";

export function CredentialsPage() {
  const s = useSession();
  const { snapshot, reconnecting, error } = useIdentity();
  const [creating, setCreating] = useState(false);
  const [revoke, setRevoke] = useState<Credential | null>(null);
  const allowed = s.hasScope("manage:credentials");
  const creds = snapshot?.credentials ?? [];

  return (
    <>
      <LivePageHeader
        title="Credentials"
        description="Machine credentials of this environment: client id and secret for the client credentials grant (CI pipelines, agents, the CLI)."
        reconnecting={reconnecting}
        error={error}
        action={allowed && { label: "New credential", onClick: () => setCreating(true) }}
      />
      {!allowed ? (
        <NotPermitted title="Your roles cannot manage credentials">Managing credentials needs the manage:credentials scope.</NotPermitted>
      ) : (
        <Card>
          {snapshot === null ? (
            <EmptyState title="Loading…" />
          ) : creds.length === 0 ? (
            <EmptyState title="No credentials yet">Create one for a CI pipeline or a script; its secret is shown once.</EmptyState>
          ) : (
            <Table head={["Name", "Client id", "Roles", "Created", ""]}>
              {creds.map((c) => (
                <tr key={c.id} data-testid="credential-row">
                  <td className={`${td} font-medium text-slate-900`}>{c.name}</td>
                  <td className={`${td} font-mono text-xs`}>{c.clientId}</td>
                  <td className={td}>
                    <div className="flex flex-wrap gap-1">
                      {c.roles.map((r) => (
                        <Tag key={r}>{r}</Tag>
                      ))}
                    </div>
                  </td>
                  <td className={td}>{when(c.createTime)}</td>
                  <td className={`${td} text-right`}>
                    <Button variant="danger-ghost" onClick={() => setRevoke(c)} aria-label={`Revoke ${c.name}`}>
                      Revoke
                    </Button>
                  </td>
                </tr>
              ))}
            </Table>
          )}
        </Card>
      )}
      <CreateCredential open={creating} onClose={() => setCreating(false)} />
      <Confirm
        open={revoke !== null}
        onClose={() => setRevoke(null)}
        title="Revoke this credential?"
        confirmLabel="Revoke"
        danger
        action={async () => {
          await identity.deleteCredential({ id: revoke?.id ?? "" });
        }}
      >
        <strong>{revoke?.name}</strong> stops working at once: its tokens are refused and agents using it disconnect.
      </Confirm>
    </>
  );
}

function CreateCredential({ open, onClose }: { open: boolean; onClose: () => void }) {
  const { roles, error: rolesError } = useGrantableRoles();
  const [name, setName] = useState("");
  const [picked, setPicked] = useState<string[]>([]);
  return (
    <CreateDialog
      open={open}
      onClose={onClose}
      title="New credential"
      createdTitle="Credential created"
      submitLabel="Create credential"
      reset={() => {
        setName("");
        setPicked([]);
      }}
      create={async () => {
        if (!name.trim()) throw new Error("Give the credential a name.");
        if (picked.length === 0) throw new Error("Pick at least one role.");
        const res = await identity.createCredential({ name: name.trim(), roles: picked });
        return { clientId: res.credential?.clientId ?? "", secret: res.clientSecret };
      }}
      shown={(created) => (
        <>
          <p className="text-sm text-slate-600">Copy the secret now: it is shown only this once.</p>
          <Field label="Client id">
            <code data-testid="client-id" className="font-mono text-sm">
              {created.clientId}
            </code>
          </Field>
          <div>
            <span className="block text-sm font-medium text-slate-800">Client secret</span>
            <div className="mt-1">
              <SecretBox value={created.secret} testid="secret-value" copyTestid="copy-secret" />
            </div>
          </div>
        </>
      )}
    >
      <Field label="Name">
        <input className={inputClass} value={name} onChange={(e) => setName(e.target.value)} placeholder="ci-pipeline" autoFocus />
      </Field>
      <ErrorMessage error={rolesError} />
      <RolePicker roles={roles} value={picked} onChange={setPicked} />
    </CreateDialog>
  );
}
