import { useState } from "react";
import { identity } from "../api";
import { useSession } from "../session";
import { useGrantableRoles, useIdentity } from "../identityStream";
import type { Invitation, User } from "../gen/sortie/identity/v1/identity_pb";
import { Button, Card, CardHeader, Confirm, CreateDialog, EmptyState, ErrorMessage, Field, LivePageHeader, NotPermitted, RolePicker, SecretBox, Table, Tag, inputClass, td } from "../components/ui";
import { when } from "../time";

export function UsersPage() {
  const s = useSession();
  const { snapshot, reconnecting, error } = useIdentity();
  const [inviting, setInviting] = useState(false);
  const [remove, setRemove] = useState<User | null>(null);
  const [revoke, setRevoke] = useState<Invitation | null>(null);
  const allowed = s.hasScope("manage:tenant");
  const users = snapshot?.users ?? [];
  const invitations = snapshot?.invitations ?? [];

  return (
    <>
      <LivePageHeader
        title="Users"
        description={`People who are members of environment ${s.envName}, and pending invitations.`}
        reconnecting={reconnecting}
        error={error}
        action={allowed && { label: "Invite user", onClick: () => setInviting(true) }}
      />
      {!allowed ? (
        <NotPermitted title="Your roles cannot manage users">Managing users needs the manage:tenant scope (Organization Admin).</NotPermitted>
      ) : (
        <>
          <Card className="mb-6">
            <CardHeader title="Members" />
            {snapshot === null ? (
              <EmptyState title="Loading…" />
            ) : users.length === 0 ? (
              <EmptyState title="No users in this environment">Invite someone: they get a link to set their password.</EmptyState>
            ) : (
              <Table head={["User", "Roles", "Sign-in", "Since", ""]}>
                {users.map((u) => (
                  <tr key={u.id} data-testid="user-row">
                    <td className={td}>
                      <div className="font-medium text-slate-900">{u.name || u.login}</div>
                      <div className="text-xs text-slate-500">{u.login}</div>
                    </td>
                    <td className={td}>
                      <div className="flex flex-wrap gap-1">
                        {u.roles.map((r) => (
                          <Tag key={r}>{r}</Tag>
                        ))}
                      </div>
                    </td>
                    <td className={td}>{u.external ? "External provider" : "Password"}</td>
                    <td className={td}>{when(u.createTime)}</td>
                    <td className={`${td} text-right`}>
                      {u.id !== s.principal.subject && (
                        <Button variant="danger-ghost" onClick={() => setRemove(u)} aria-label={`Remove ${u.login}`}>
                          Remove
                        </Button>
                      )}
                    </td>
                  </tr>
                ))}
              </Table>
            )}
          </Card>
          <Card>
            <CardHeader title="Pending invitations" />
            {invitations.length === 0 ? (
              <EmptyState title="No pending invitations" />
            ) : (
              <Table head={["Email", "Roles", "Invited by", "Expires", ""]}>
                {invitations.map((i) => (
                  <tr key={i.id} data-testid="invitation-row">
                    <td className={`${td} font-medium text-slate-900`}>{i.email}</td>
                    <td className={td}>
                      <div className="flex flex-wrap gap-1">
                        {i.roles.map((r) => (
                          <Tag key={r}>{r}</Tag>
                        ))}
                      </div>
                    </td>
                    <td className={td}>{i.invitedBy}</td>
                    <td className={td}>{when(i.expireTime)}</td>
                    <td className={`${td} text-right`}>
                      <Button variant="danger-ghost" onClick={() => setRevoke(i)} aria-label={`Withdraw invitation of ${i.email}`}>
                        Withdraw
                      </Button>
                    </td>
                  </tr>
                ))}
              </Table>
            )}
          </Card>
        </>
      )}
      <InviteDialog open={inviting} onClose={() => setInviting(false)} />
      <Confirm
        open={remove !== null}
        onClose={() => setRemove(null)}
        title="Remove this user?"
        confirmLabel="Remove user"
        danger
        action={async () => {
          await identity.removeUser({ id: remove?.id ?? "" });
        }}
      >
        <strong>{remove?.login}</strong> loses access to {s.envName} at once; their open sessions end.
      </Confirm>
      <Confirm
        open={revoke !== null}
        onClose={() => setRevoke(null)}
        title="Withdraw this invitation?"
        confirmLabel="Withdraw"
        danger
        action={async () => {
          await identity.revokeInvitation({ id: revoke?.id ?? "" });
        }}
      >
        The link sent to <strong>{revoke?.email}</strong> stops working.
      </Confirm>
    </>
  );
}

function InviteDialog({ open, onClose }: { open: boolean; onClose: () => void }) {
  const { roles, error: rolesError } = useGrantableRoles();
  const [email, setEmail] = useState("");
  const [picked, setPicked] = useState<string[]>([]);
  return (
    <CreateDialog
      open={open}
      onClose={onClose}
      title="Invite a user"
      createdTitle="Invitation created"
      submitLabel="Create invitation"
      reset={() => {
        setEmail("");
        setPicked([]);
      }}
      create={async () => {
        if (!email.includes("@")) throw new Error("Enter the person's email address.");
        if (picked.length === 0) throw new Error("Pick at least one role.");
        const res = await identity.createInvitation({ email: email.trim(), roles: picked });
        return res.url;
      }}
      shown={(link) => (
        <>
          <p className="text-sm text-slate-600">
            Send this link to <strong>{email}</strong>. It is shown only this once.
          </p>
          <SecretBox value={link} testid="invitation-link" copyTestid="copy-invitation-link" />
        </>
      )}
    >
      <Field label="Email">
        <input type="email" className={inputClass} value={email} onChange={(e) => setEmail(e.target.value)} placeholder="name@example.com" autoFocus />
      </Field>
      <ErrorMessage error={rolesError} />
      <RolePicker roles={roles} value={picked} onChange={setPicked} />
    </CreateDialog>
  );
}
