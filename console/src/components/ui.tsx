// The console's building blocks: Tailwind classes over Headless UI's accessible dialog.
import { useEffect, useState, type ButtonHTMLAttributes, type FormEvent, type ReactNode } from "react";
import { Dialog, DialogPanel, DialogTitle } from "@headlessui/react";
import { errorText } from "../api";

/**
 * The state of a button or form that runs action: busy while it runs, and what it threw (an
 * Error for a problem with the input, or the server's error) until the next run or clear.
 */
export function useAction<A extends unknown[]>(action: (...args: A) => Promise<void>) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const run = async (...args: A) => {
    setError(null);
    setBusy(true);
    try {
      await action(...args);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return { busy, error, run, clear: () => setError(null) };
}

/** A form's onSubmit that runs run instead of navigating. */
export function submitting(run: () => Promise<void>) {
  return (e: FormEvent) => {
    e.preventDefault();
    void run();
  };
}

type Variant = "primary" | "secondary" | "danger" | "ghost" | "danger-ghost";

const variants: Record<Variant, string> = {
  primary: "bg-indigo-600 text-white hover:bg-indigo-500 focus-visible:outline-indigo-600 shadow-sm",
  secondary: "bg-white text-slate-900 ring-1 ring-inset ring-slate-300 hover:bg-slate-50 shadow-sm",
  danger: "bg-rose-600 text-white hover:bg-rose-500 focus-visible:outline-rose-600 shadow-sm",
  ghost: "text-slate-600 hover:bg-slate-100 hover:text-slate-900",
  "danger-ghost": "text-rose-700 hover:bg-rose-50 hover:text-rose-800",
};

export function Button({
  variant = "secondary",
  className = "",
  ...props
}: ButtonHTMLAttributes<HTMLButtonElement> & { variant?: Variant }) {
  return (
    <button
      type="button"
      {...props}
      className={`inline-flex items-center justify-center gap-1.5 rounded-md px-3 py-1.5 text-sm font-semibold focus-visible:outline-2 focus-visible:outline-offset-2 disabled:cursor-not-allowed disabled:opacity-50 ${variants[variant]} ${className}`}
    />
  );
}

export function PageHeader({ title, description, actions }: { title: string; description?: ReactNode; actions?: ReactNode }) {
  useEffect(() => {
    document.title = `${title} · Sortie`;
  }, [title]);
  return (
    <div className="mb-6 flex items-start justify-between gap-4">
      <div className="min-w-0 flex-1">
        <h1 className="text-2xl font-semibold tracking-tight text-slate-900">{title}</h1>
        {description && <p className="mt-1 text-sm text-slate-500">{description}</p>}
      </div>
      {actions && <div className="flex shrink-0 items-center gap-2">{actions}</div>}
    </div>
  );
}

/**
 * The header of a live page: its title, the stream's state, the main action (for those
 * whose roles allow it; false otherwise) and the stream's error under it.
 */
export function LivePageHeader({
  title,
  description,
  reconnecting,
  error,
  action,
}: {
  title: string;
  description?: ReactNode;
  reconnecting: boolean;
  error: unknown;
  action?: { label: string; onClick: () => void } | false;
}) {
  return (
    <>
      <PageHeader
        title={title}
        description={description}
        actions={
          <>
            <StreamIndicator reconnecting={reconnecting} />
            {action && (
              <Button variant="primary" onClick={action.onClick}>
                {action.label}
              </Button>
            )}
          </>
        }
      />
      <ErrorMessage error={error} className="mb-4" />
    </>
  );
}

/** What a page shows instead of its content to a principal whose roles cannot use it. */
export function NotPermitted({ title, children }: { title: string; children: ReactNode }) {
  return (
    <Card>
      <EmptyState title={title}>{children}</EmptyState>
    </Card>
  );
}

export function Card({ children, className = "" }: { children: ReactNode; className?: string }) {
  return <div className={`rounded-lg bg-white shadow-sm ring-1 ring-slate-200 ${className}`}>{children}</div>;
}

export function CardHeader({ title, actions }: { title: ReactNode; actions?: ReactNode }) {
  return (
    <div className="flex items-center justify-between gap-4 border-b border-slate-200 px-4 py-3">
      <h2 className="text-sm font-semibold text-slate-900">{title}</h2>
      {actions}
    </div>
  );
}

export function EmptyState({ title, children }: { title: string; children?: ReactNode }) {
  return (
    <div data-testid="empty-state" className="px-6 py-12 text-center">
      <p className="text-sm font-semibold text-slate-900">{title}</p>
      {children && <div className="mx-auto mt-1 max-w-xl text-sm text-slate-500">{children}</div>}
    </div>
  );
}

export function ErrorMessage({ error, className = "" }: { error: unknown; className?: string }) {
  if (!error) return null;
  return (
    <div
      role="alert"
      data-testid="error-message"
      className={`rounded-md border border-rose-200 bg-rose-50 px-3 py-2 text-sm text-rose-800 ${className}`}
    >
      {typeof error === "string" ? error : errorText(error)}
    </div>
  );
}

export function Notice({ children }: { children: ReactNode }) {
  return (
    <div role="status" className="rounded-md border border-emerald-200 bg-emerald-50 px-3 py-2 text-sm text-emerald-800">
      {children}
    </div>
  );
}

export function Reconnecting({ show }: { show: boolean }) {
  if (!show) return null;
  return (
    <span
      data-testid="reconnecting"
      role="status"
      className="inline-flex items-center gap-1.5 rounded-full bg-amber-50 px-2.5 py-1 text-xs font-medium text-amber-800 ring-1 ring-inset ring-amber-200"
    >
      <span className="size-1.5 animate-pulse rounded-full bg-amber-500" />
      reconnecting…
    </span>
  );
}

export function LiveDot() {
  return (
    <span className="inline-flex items-center gap-1.5 text-xs font-medium text-emerald-700">
      <span className="size-1.5 rounded-full bg-emerald-500" />
      live
    </span>
  );
}

export function StreamIndicator({ reconnecting }: { reconnecting: boolean }) {
  return reconnecting ? <Reconnecting show /> : <LiveDot />;
}

const statusColors: Record<string, string> = {
  NOT_STARTED: "bg-slate-100 text-slate-700 ring-slate-300",
  QUEUED: "bg-slate-100 text-slate-700 ring-slate-300",
  RUNNING: "bg-sky-50 text-sky-800 ring-sky-200",
  PAUSED: "bg-violet-50 text-violet-800 ring-violet-200",
  AWAITING_APPROVAL: "bg-amber-50 text-amber-800 ring-amber-300",
  SUCCEEDED: "bg-emerald-50 text-emerald-800 ring-emerald-200",
  FAILED: "bg-rose-50 text-rose-800 ring-rose-200",
  CANCELLED: "bg-zinc-100 text-zinc-700 ring-zinc-300",
  REJECTED: "bg-zinc-100 text-zinc-700 ring-zinc-300",
};

export function StatusBadge({ status }: { status: string }) {
  return (
    <span
      data-testid="status"
      className={`inline-flex items-center rounded-md px-2 py-0.5 font-mono text-xs font-medium ring-1 ring-inset ${statusColors[status] ?? "bg-slate-100 text-slate-700 ring-slate-300"}`}
    >
      {status}
    </span>
  );
}

export function Tag({ children }: { children: ReactNode }) {
  return (
    <span className="inline-flex items-center rounded-md bg-slate-100 px-2 py-0.5 text-xs font-medium text-slate-700 ring-1 ring-inset ring-slate-200">
      {children}
    </span>
  );
}

/** A modal dialog with a title, a body and the buttons the caller gives. */
export function Modal({
  open,
  onClose,
  title,
  children,
}: {
  open: boolean;
  onClose: () => void;
  title: string;
  children: ReactNode;
}) {
  return (
    <Dialog open={open} onClose={onClose} className="relative z-50">
      <div className="fixed inset-0 bg-slate-900/40" aria-hidden="true" />
      <div className="fixed inset-0 flex items-start justify-center overflow-y-auto p-4 pt-[12vh]">
        <DialogPanel className="w-full max-w-lg rounded-lg bg-white p-6 shadow-xl ring-1 ring-slate-200">
          <DialogTitle className="text-base font-semibold text-slate-900">{title}</DialogTitle>
          <div className="mt-3">{children}</div>
        </DialogPanel>
      </div>
    </Dialog>
  );
}

/**
 * A confirmation dialog: the action runs when confirmed; its error (for example the
 * server's FailedPrecondition for a pipeline that moved on) is shown in the dialog.
 */
export function Confirm({
  open,
  onClose,
  title,
  children,
  confirmLabel,
  danger,
  action,
}: {
  open: boolean;
  onClose: () => void;
  title: string;
  children: ReactNode;
  confirmLabel: string;
  danger?: boolean;
  action: () => Promise<void>;
}) {
  const act = useAction(async () => {
    await action();
    close();
  });
  const close = () => {
    act.clear();
    onClose();
  };
  return (
    <Modal open={open} onClose={close} title={title}>
      <div className="text-sm text-slate-600">{children}</div>
      <ErrorMessage error={act.error} className="mt-4" />
      <div className="mt-6 flex justify-end gap-2">
        <Button onClick={close}>{act.error ? "Close" : "Cancel"}</Button>
        {!act.error && (
          <Button data-testid="confirm-button" variant={danger ? "danger" : "primary"} disabled={act.busy} onClick={() => void act.run()}>
            {confirmLabel}
          </Button>
        )}
      </div>
    </Modal>
  );
}

/**
 * A dialog whose form creates something the server shows only once (a secret, a link).
 * create runs on submit: what it throws (an Error for a problem with the form, or the
 * server's error) is shown and the form stays; what it returns replaces the form, shown by
 * shown, with a Done button. reset clears the form's fields when the dialog closes.
 */
export function CreateDialog<T>({
  open,
  onClose,
  title,
  createdTitle,
  submitLabel,
  create,
  shown,
  reset,
  children,
}: {
  open: boolean;
  onClose: () => void;
  title: string;
  createdTitle: string;
  submitLabel: string;
  create: () => Promise<T>;
  shown: (created: T) => ReactNode;
  reset: () => void;
  children: ReactNode;
}) {
  const [created, setCreated] = useState<{ value: T } | null>(null);
  const submit = useAction(async () => setCreated({ value: await create() }));
  const close = () => {
    reset();
    submit.clear();
    setCreated(null);
    onClose();
  };
  return (
    <Modal open={open} onClose={close} title={created ? createdTitle : title}>
      {created ? (
        <div className="space-y-4">
          {shown(created.value)}
          <div className="flex justify-end">
            <Button variant="primary" onClick={close}>
              Done
            </Button>
          </div>
        </div>
      ) : (
        <form className="space-y-4" onSubmit={submitting(submit.run)}>
          {children}
          <ErrorMessage error={submit.error} />
          <div className="flex justify-end gap-2">
            <Button onClick={close}>Cancel</Button>
            <Button type="submit" variant="primary" disabled={submit.busy}>
              {submitLabel}
            </Button>
          </div>
        </form>
      )}
    </Modal>
  );
}

export function CopyButton({ value, testid, label = "Copy" }: { value: string; testid?: string; label?: string }) {
  const [copied, setCopied] = useState(false);
  return (
    <Button
      data-testid={testid}
      aria-label={label}
      onClick={async () => {
        try {
          await navigator.clipboard.writeText(value);
        } catch {
          // Clipboard refused (insecure origin): select the text for a manual copy.
          const el = document.querySelector<HTMLElement>(`[data-copy-source="${CSS.escape(value)}"]`);
          if (el) window.getSelection()?.selectAllChildren(el);
        }
        setCopied(true);
        setTimeout(() => setCopied(false), 2000);
      }}
    >
      {copied ? "Copied" : label}
    </Button>
  );
}

/** A value shown once (a secret, a link) with its copy button. */
export function SecretBox({ value, testid, copyTestid }: { value: string; testid: string; copyTestid: string }) {
  return (
    <div className="flex items-center gap-2 rounded-md bg-slate-900 p-2 pl-3">
      <code data-testid={testid} data-copy-source={value} className="min-w-0 flex-1 break-all font-mono text-sm text-emerald-300">
        {value}
      </code>
      <CopyButton value={value} testid={copyTestid} />
    </div>
  );
}

export function Field({ label, children, hint }: { label: string; children: ReactNode; hint?: ReactNode }) {
  // The hint stays outside the label so that the control's accessible name is the label alone.
  return (
    <div>
      <label className="block">
        <span className="block text-sm font-medium text-slate-800">{label}</span>
        <div className="mt-1">{children}</div>
      </label>
      {hint && <p className="mt-1 text-xs text-slate-500">{hint}</p>}
    </div>
  );
}

export const inputClass =
  "block w-full rounded-md border-0 bg-white px-3 py-1.5 text-sm text-slate-900 shadow-sm ring-1 ring-inset ring-slate-300 placeholder:text-slate-400 focus:ring-2 focus:ring-inset focus:ring-indigo-600";

export function Table({ head, children }: { head: string[]; children: ReactNode }) {
  return (
    <div className="overflow-x-auto">
      <table className="min-w-full divide-y divide-slate-200 text-sm">
        <thead>
          <tr>
            {head.map((h) => (
              <th key={h} scope="col" className="px-4 py-2.5 text-left text-xs font-semibold uppercase tracking-wide text-slate-500">
                {h}
              </th>
            ))}
          </tr>
        </thead>
        <tbody className="divide-y divide-slate-100">{children}</tbody>
      </table>
    </div>
  );
}

export const td = "px-4 py-3 align-middle text-slate-700";

/** Role checkboxes; only the given roles can be picked. */
export function RolePicker({
  roles,
  value,
  onChange,
}: {
  roles: { name: string; scopes: string[] }[];
  value: string[];
  onChange: (v: string[]) => void;
}) {
  if (roles.length === 0) return <p className="text-sm text-slate-500">There are no roles you may grant.</p>;
  return (
    <fieldset className="space-y-2">
      <legend className="text-sm font-medium text-slate-800">Roles</legend>
      {roles.map((r) => (
        <label key={r.name} className="flex items-start gap-2 text-sm">
          <input
            type="checkbox"
            className="mt-0.5 size-4 shrink-0 rounded border-slate-300 accent-indigo-600"
            checked={value.includes(r.name)}
            onChange={(e) => onChange(e.target.checked ? [...value, r.name] : value.filter((x) => x !== r.name))}
          />
          <span>
            <span className="font-medium text-slate-900">{r.name}</span>
            <span className="block text-xs text-slate-500">{r.scopes.join(", ")}</span>
          </span>
        </label>
      ))}
    </fieldset>
  );
}
