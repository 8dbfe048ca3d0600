import { useMemo, useState } from "react";
import { Link, useSearchParams } from "react-router";
import { deploy } from "../api";
import { useSession } from "../session";
import { useNow, useStream } from "../stream";
import { Status, type Pipeline } from "../gen/sortie/deploy/v1/deploy_pb";
import { Card, EmptyState, ErrorMessage, PageHeader, StatusBadge, StreamIndicator, Table, inputClass, td } from "../components/ui";
import { ago, when } from "../time";

export const statusName = (s: Status) => Status[s] ?? String(s);
export const terminal = (s: Status) =>
  s === Status.SUCCEEDED || s === Status.FAILED || s === Status.CANCELLED || s === Status.REJECTED;
const statuses = Object.values(Status).filter((v): v is Status => typeof v === "number" && v !== Status.UNSPECIFIED);

export function DeploymentsPage() {
  const s = useSession();
  const [pipelines, setPipelines] = useState<Map<string, Pipeline>>(new Map());
  const [params, setParams] = useSearchParams();
  const status = params.get("status") ?? "";
  const application = params.get("application") ?? "";
  const now = useNow(5000);

  const stream = useStream(
    async (signal, live) => {
      // The stream starts with the current views of the newest pipelines; a reconnect
      // starts again from a clean list when its headers arrive.
      let fresh = true;
      for await (const res of deploy.watchPipelines(
        {},
        {
          signal,
          onHeader: () => {
            live();
            if (fresh) setPipelines(new Map());
            fresh = false;
          },
        },
      )) {
        live();
        const p = res.pipeline;
        if (!p) continue;
        setPipelines((m) => {
          const old = m.get(p.id);
          if (old && old.revision > p.revision) return m;
          const next = new Map(m);
          next.set(p.id, p);
          return next;
        });
      }
    },
    [s.epoch],
  );

  const all = useMemo(
    () => [...pipelines.values()].sort((a, b) => Number((b.createTime?.seconds ?? 0n) - (a.createTime?.seconds ?? 0n)) || b.id.localeCompare(a.id)),
    [pipelines],
  );
  const apps = useMemo(() => [...new Set(all.map((p) => p.application))].sort(), [all]);
  const shown = all.filter((p) => (!status || statusName(p.status) === status) && (!application || p.application === application));

  const setFilter = (k: string, v: string) => {
    const next = new URLSearchParams(params);
    if (v) next.set(k, v);
    else next.delete(k);
    setParams(next, { replace: true });
  };

  return (
    <>
      <PageHeader
        title="Deployments"
        description="Pipelines of this environment, newest first, as they change."
        actions={<StreamIndicator reconnecting={stream.reconnecting} />}
      />
      <div className="mb-4 flex flex-wrap gap-3">
        <label className="text-sm">
          <span className="mr-2 font-medium text-slate-700">Status</span>
          <select data-testid="status-filter" className={`${inputClass} inline-block w-56`} value={status} onChange={(e) => setFilter("status", e.target.value)}>
            <option value="">All statuses</option>
            {statuses.map((v) => (
              <option key={v} value={statusName(v)}>
                {statusName(v)}
              </option>
            ))}
          </select>
        </label>
        <label className="text-sm">
          <span className="mr-2 font-medium text-slate-700">Application</span>
          <select
            data-testid="application-filter"
            className={`${inputClass} inline-block w-56`}
            value={application}
            onChange={(e) => setFilter("application", e.target.value)}
          >
            <option value="">All applications</option>
            {[...new Set([...apps, ...(application ? [application] : [])])].map((a) => (
              <option key={a} value={a}>
                {a}
              </option>
            ))}
          </select>
        </label>
      </div>
      <ErrorMessage error={stream.error} className="mb-4" />
      <Card>
        {shown.length === 0 ? (
          all.length === 0 ? (
            <EmptyState title="No deployments yet">
              Start one with the Armory CLI, the Spinnaker stage, <code className="font-mono">POST /pipelines/kubernetes</code> or
              DeploymentService.StartPipeline; it appears here at once.
            </EmptyState>
          ) : (
            <EmptyState title="No deployment matches the filters" />
          )
        ) : (
          <Table head={["Application", "Status", "Targets", "Started by", "Created"]}>
            {shown.map((p) => (
              <tr key={p.id} data-testid="pipeline-row" className="hover:bg-slate-50">
                <td className={td}>
                  <Link to={`/deployments/${encodeURIComponent(p.id)}`} className="font-medium text-indigo-700 hover:underline">
                    {p.application}
                  </Link>
                  <div className="font-mono text-xs text-slate-500">{p.id}</div>
                </td>
                <td className={td}>
                  <StatusBadge status={statusName(p.status)} />
                  {p.message && <div className="mt-1 max-w-xs text-xs text-slate-500">{p.message}</div>}
                </td>
                <td className={td}>
                  <ul className="space-y-0.5">
                    {p.targets.map((t) => (
                      <li key={t.name} className="text-xs text-slate-700">
                        {t.name}
                        <span className="ml-1.5 font-mono text-[11px] text-slate-400">{statusName(t.status)}</span>
                      </li>
                    ))}
                  </ul>
                </td>
                <td className={td}>{p.initiatedBy?.name || "—"}</td>
                <td className={td}>
                  <div>{when(p.createTime)}</div>
                  <div className="text-xs text-slate-500">{ago(p.createTime, now)}</div>
                </td>
              </tr>
            ))}
          </Table>
        )}
      </Card>
    </>
  );
}
