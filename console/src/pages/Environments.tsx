import { useState } from "react";
import { identity } from "../api";
import { useSession } from "../session";
import { useIdentity } from "../identityStream";
import { Button, Card, CreateDialog, EmptyState, ErrorMessage, Field, LivePageHeader, SecretBox, Table, inputClass, td } from "../components/ui";
import { when } from "../time";

export function EnvironmentsPage() {
  const s = useSession();
  const { snapshot, reconnecting, error } = useIdentity();
  const [creating, setCreating] = useState(false);
  const [switchError, setSwitchError] = useState<unknown>(null);
  const envs = snapshot?.environments.length ? snapshot.environments : s.environments;
  const members = new Set((snapshot?.memberships.length ? snapshot.memberships : s.environments).map((e) => e.id));

  return (
    <>
      <LivePageHeader
        title="Environments"
        description={`Environments of ${s.principal.orgName}. Agents, deployments, credentials and users belong to one environment.`}
        reconnecting={reconnecting}
        error={error}
        action={s.hasScope("manage:tenant") && { label: "New environment", onClick: () => setCreating(true) }}
      />
      <ErrorMessage error={switchError} className="mb-4" />
      <Card>
        {envs.length === 0 ? (
          <EmptyState title="No environments" />
        ) : (
          <Table head={["Name", "Id", "Created", ""]}>
            {envs.map((e) => (
              <tr key={e.id} data-testid="env-row">
                <td className={`${td} font-medium text-slate-900`}>{e.name}</td>
                <td className={`${td} font-mono text-xs`}>{e.id}</td>
                <td className={td}>{when(e.createTime)}</td>
                <td className={`${td} text-right`}>
                  {e.id === s.principal.envId ? (
                    <span className="text-xs font-semibold text-emerald-700">Current</span>
                  ) : s.isUser && members.has(e.id) ? (
                    <Button
                      onClick={() => {
                        setSwitchError(null);
                        s.switchEnvironment(e.id).catch(setSwitchError);
                      }}
                      aria-label={`Switch to ${e.name}`}
                    >
                      Switch
                    </Button>
                  ) : (
                    <span className="text-xs text-slate-400">not a member</span>
                  )}
                </td>
              </tr>
            ))}
          </Table>
        )}
      </Card>
      <CreateEnvironment open={creating} onClose={() => setCreating(false)} />
    </>
  );
}

function CreateEnvironment({ open, onClose }: { open: boolean; onClose: () => void }) {
  const s = useSession();
  const [name, setName] = useState("");
  return (
    <CreateDialog
      open={open}
      onClose={onClose}
      title="New environment"
      createdTitle="Environment created"
      submitLabel="Create environment"
      reset={() => setName("")}
      create={async () => {
        if (!/^[a-zA-Z0-9][a-zA-Z0-9_-]{0,62}$/.test(name)) {
          throw new Error("A name is 1 to 63 letters, digits, '-' or '_', starting with a letter or digit.");
        }
        const res = await identity.createEnvironment({ name });
        // The secret must be shown whatever happens next; the environment list follows the
        // identity stream anyway, so a failed refresh of the session only delays the switch.
        await s.refresh().catch(() => undefined);
        return { name, clientId: res.adminCredential?.clientId ?? "", secret: res.adminClientSecret };
      }}
      shown={(created) => (
        <>
          <p className="text-sm text-slate-600">
            <strong>{created.name}</strong> exists{s.isUser ? " and you are its Organization Admin" : ""}. Its admin credential{" "}
            <code className="font-mono">{created.clientId}</code> has this secret, shown only this once:
          </p>
          <SecretBox value={created.secret} testid="secret-value" copyTestid="copy-secret" />
        </>
      )}
    >
      <Field label="Name" hint="Letters, digits, '-' and '_'.">
        <input className={inputClass} value={name} onChange={(e) => setName(e.target.value)} placeholder="staging" autoFocus />
      </Field>
    </CreateDialog>
  );
}
