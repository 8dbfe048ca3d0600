import type { ReactNode } from "react";

/** The centred card of the pages shown outside a session: callback, invitation, errors. */
export function AuthFrame({ title, children }: { title: string; children: ReactNode }) {
  return (
    <div className="flex min-h-full items-start justify-center bg-slate-100 px-4 pt-[12vh]">
      <div className="w-full max-w-md">
        <div className="mb-6 flex items-center justify-center gap-2">
          <img src="/console/favicon.svg" alt="" className="size-8" />
          <span className="text-xl font-semibold tracking-tight text-slate-900">Sortie</span>
        </div>
        <div className="rounded-lg bg-white p-6 shadow-sm ring-1 ring-slate-200">
          <h1 className="mb-4 text-lg font-semibold text-slate-900">{title}</h1>
          {children}
        </div>
      </div>
    </div>
  );
}
