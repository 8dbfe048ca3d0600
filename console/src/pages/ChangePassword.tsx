import { useState } from "react";
import { identity } from "../api";
import { Button, ErrorMessage, Field, Modal, Notice, inputClass, submitting, useAction } from "../components/ui";

export function ChangePasswordDialog({ open, onClose }: { open: boolean; onClose: () => void }) {
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const [repeat, setRepeat] = useState("");
  const [done, setDone] = useState(false);
  const change = useAction(async () => {
    if (next.length < 12) throw new Error("The new password must have at least 12 characters.");
    if (next !== repeat) throw new Error("The new passwords differ.");
    await identity.changePassword({ currentPassword: current, newPassword: next });
    setDone(true);
  });
  const close = () => {
    setCurrent("");
    setNext("");
    setRepeat("");
    change.clear();
    setDone(false);
    onClose();
  };
  return (
    <Modal open={open} onClose={close} title="Change password">
      {done ? (
        <>
          <Notice>Your password was changed. Your other console sessions and the terminals signed in with <code>sortie login</code> are signed out.</Notice>
          <div className="mt-6 flex justify-end">
            <Button onClick={close}>Close</Button>
          </div>
        </>
      ) : (
        <form className="space-y-4" onSubmit={submitting(change.run)}>
          <Field label="Current password">
            <input type="password" autoComplete="current-password" className={inputClass} value={current} onChange={(e) => setCurrent(e.target.value)} required />
          </Field>
          <Field label="New password" hint="At least 12 characters.">
            <input type="password" autoComplete="new-password" className={inputClass} value={next} onChange={(e) => setNext(e.target.value)} required />
          </Field>
          <Field label="Repeat the new password">
            <input type="password" autoComplete="new-password" className={inputClass} value={repeat} onChange={(e) => setRepeat(e.target.value)} required />
          </Field>
          <ErrorMessage error={change.error} />
          <div className="flex justify-end gap-2">
            <Button onClick={close}>Cancel</Button>
            <Button type="submit" variant="primary" disabled={change.busy}>
              Change password
            </Button>
          </div>
        </form>
      )}
    </Modal>
  );
}
