import { useState } from "react";
import { Link, useParams } from "react-router";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { deploy } from "../api";
import { useSession } from "../session";
import { useNow, useStream } from "../stream";
import { DecisionAction, PauseReason, StepType, type Pipeline, type Target } from "../gen/sortie/deploy/v1/deploy_pb";
import { Button, Card, CardHeader, Confirm, EmptyState, ErrorMessage, PageHeader, StatusBadge, StreamIndicator, Table, Tag, td } from "../components/ui";
import { duration, when } from "../time";
import { statusName, terminal } from "./Deployments";
import { Status } from "../gen/sortie/deploy/v1/deploy_pb";
import { PipelineGraph, layers } from "./PipelineGraph";

export function DeploymentDetailPage() {
  const { id = "" } = useParams();
  const s = useSession();
  const [p, setP] = useState<Pipeline | null>(null);
  const [loaded, setLoaded] = useState(false);
  const canAct = s.hasScope("manage:deploy");
  const [approve, setApprove] = useState<{ step: string; label: string } | null>(null);
  const [abort, setAbort] = useState(false);
  const [notice, setNotice] = useState("");

  const stream = useStream(
    async (signal, live) => {
      let last: Pipeline | undefined;
      for await (const res of deploy.watchPipeline({ id }, { signal, onHeader: live })) {
        live();
        setLoaded(true);
        if (res.pipeline) {
          const next = res.pipeline;
          last = next;
          setP((old) => (old && old.id === next.id && old.revision > next.revision ? old : next));
        }
      }
      // The server ends the stream of a finished pipeline after its last view: nothing
      // more will change, so there is nothing to reconnect for.
      if (last && terminal(last.status)) {
        await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve()));
      }
    },
    [id, s.epoch],
  );

  if (!p) {
    return (
      <>
        <PageHeader title="Deployment" description={<span className="font-mono">{id}</span>} actions={<StreamIndicator reconnecting={stream.reconnecting} />} />
        <ErrorMessage error={stream.error} />
        {!stream.error && <Card><EmptyState title={loaded ? "No such deployment" : "Loading…"} /></Card>}
        <BackLink />
      </>
    );
  }

  // Every step waiting for a person: approval pauses of the graph and the targets' pauses.
  // A step that names roles can be approved only by a holder of one of them (the server
  // checks it too); the button is offered only to those who can.
  const approvals = new Map<string, string>();
  const blocked = new Map<string, string[]>();
  const mayApprove = (roles: string[]) => roles.length === 0 || roles.some((r) => s.principal.roles.includes(r));
  for (const st of p.steps) {
    if (st.type === StepType.PAUSE && st.status === Status.AWAITING_APPROVAL) {
      const roles = st.detail.case === "pause" ? st.detail.value.requiresRoles : [];
      const label = st.constraintFor ? `before ${st.constraintFor}` : st.ref;
      if (mayApprove(roles)) approvals.set(st.ref, label);
      else blocked.set(label, roles);
    }
  }
  for (const t of p.targets) {
    const step = t.pause?.step;
    if (t.status === Status.AWAITING_APPROVAL && step && !approvals.has(step) && !p.steps.some((st) => st.ref === step)) {
      if (mayApprove(t.pause?.requiresRoles ?? [])) approvals.set(step, t.name);
      else blocked.set(t.name, t.pause?.requiresRoles ?? []);
    }
  }

  return (
    <>
      <PageHeader
        title={`Deployment of ${p.application}`}
        description={
          <span className="flex flex-wrap items-center gap-2">
            <StatusBadge status={statusName(p.status)} />
            <span className="font-mono text-xs">{p.id}</span>
            <span>started by {p.initiatedBy?.name || "—"} · {when(p.createTime)}</span>
          </span>
        }
        actions={
          <>
            <StreamIndicator reconnecting={stream.reconnecting} />
            {canAct && !terminal(p.status) && (
              <Button variant="danger" data-testid="abort-button" onClick={() => setAbort(true)}>
                Abort
              </Button>
            )}
          </>
        }
      />
      <ErrorMessage error={stream.error} className="mb-4" />
      {p.message && <div className="mb-4 rounded-md border border-slate-200 bg-white px-3 py-2 text-sm text-slate-700">{p.message}</div>}
      {notice && (
        <div role="status" className="mb-4 rounded-md border border-emerald-200 bg-emerald-50 px-3 py-2 text-sm text-emerald-800">
          {notice}
        </div>
      )}

      {blocked.size > 0 && (
        <Card className="mb-6 border-l-4 border-amber-400">
          <div className="p-4 text-sm text-slate-700">
            {[...blocked.entries()].map(([label, roles]) => (
              <p key={label}>
                <strong>{label}</strong> waits for an approver with one of the roles {roles.join(", ")}, which you do not hold.
              </p>
            ))}
          </div>
        </Card>
      )}
      {approvals.size > 0 && (
        <Card className="mb-6 border-l-4 border-amber-400">
          <div className="flex flex-wrap items-center justify-between gap-3 p-4">
            <div>
              <p className="text-sm font-semibold text-slate-900">Waiting for approval</p>
              <p className="text-sm text-slate-600">{[...approvals.values()].join(", ")}</p>
              {!canAct && <p className="mt-1 text-xs text-slate-500">Your roles cannot approve deployments (manage:deploy).</p>}
            </div>
            {canAct && (
              <div className="flex gap-2">
                {[...approvals.entries()].map(([step, label]) => (
                  <Button key={step} variant="primary" data-testid="approve-button" onClick={() => setApprove({ step, label })}>
                    Approve{approvals.size > 1 ? ` ${label}` : ""}
                  </Button>
                ))}
              </div>
            )}
          </div>
        </Card>
      )}

      <Card className="mb-6">
        <CardHeader title="Targets" />
        <div className="p-4">
          <PipelineGraph targets={p.targets} />
        </div>
      </Card>

      <div className="mb-6 grid gap-4 lg:grid-cols-2">
        {byLayer(p.targets).map((t) => (
          <TargetCard key={t.name} p={p} t={t} />
        ))}
      </div>

      <History p={p} />
      <BackLink />

      <Confirm
        open={approve !== null}
        onClose={() => setApprove(null)}
        title="Approve this step?"
        confirmLabel="Approve"
        action={async () => {
          const r = await deploy.approvePipeline({ id: p.id, step: approve?.step ?? "" });
          setNotice(r.message || "Approved.");
        }}
      >
        The pipeline continues past <strong>{approve?.label}</strong> of <strong>{p.application}</strong>.
      </Confirm>
      <Confirm
        open={abort}
        onClose={() => setAbort(false)}
        title="Abort this deployment?"
        confirmLabel="Abort deployment"
        danger
        action={async () => {
          const r = await deploy.abortPipeline({ id: p.id });
          setNotice(r.message || "Aborted.");
        }}
      >
        Every target of <strong>{p.application}</strong> that has not finished stops and rolls back. This cannot be undone.
      </Confirm>
    </>
  );
}

/** The targets in the order the graph shows them: by layer, then by name. */
function byLayer(targets: Target[]): Target[] {
  const depth = layers(targets);
  return [...targets].sort((a, b) => (depth.get(a.name) ?? 0) - (depth.get(b.name) ?? 0) || a.name.localeCompare(b.name));
}

function BackLink() {
  return (
    <p className="mt-8 text-sm">
      <Link to="/deployments" className="text-indigo-700 hover:underline">
        ← All deployments
      </Link>
    </p>
  );
}

function TargetCard({ p, t }: { p: Pipeline; t: Target }) {
  const now = useNow();
  const steps = p.steps.filter(
    (st) => st.constraintFor === t.name || (st.detail.case === "deployment" && st.detail.value.environment === t.name),
  );
  const pause = t.pause;
  let countdown = "";
  if (pause?.reason === PauseReason.TIMED && pause.endTime) {
    countdown = `resumes in ${duration(timestampDate(pause.endTime).getTime() - now)}`;
  } else if (pause?.reason === PauseReason.APPROVAL && pause.expireTime) {
    countdown = `approval expires in ${duration(timestampDate(pause.expireTime).getTime() - now)}`;
  }
  return (
    <Card>
      <div id={`target-${t.name}`} data-testid="target" className="p-4">
        <div className="flex items-start justify-between gap-3">
          <div>
            <h3 className="text-base font-semibold text-slate-900">{t.name}</h3>
            <p className="text-xs text-slate-500">
              {t.account} / {t.namespace} · {t.strategy}
              {t.dependsOn.length > 0 && <> · after {t.dependsOn.join(", ")}</>}
            </p>
          </div>
          <StatusBadge status={statusName(t.status)} />
        </div>
        <dl className="mt-4 grid grid-cols-3 gap-3 text-sm">
          <div>
            <dt className="text-xs text-slate-500">Step</dt>
            <dd className="font-medium">
              {t.currentStep} / {t.totalSteps}
            </dd>
          </div>
          <div className="col-span-2">
            <dt className="text-xs text-slate-500">Weight</dt>
            <dd className="flex items-center gap-2">
              <progress data-testid="weight" className="weight h-2 flex-1" max={100} value={t.weight} aria-label={`weight ${t.weight}%`} />
              <span className="w-10 text-right font-medium">{t.weight}%</span>
            </dd>
          </div>
        </dl>
        {pause && pause.reason !== PauseReason.UNSPECIFIED && (
          <div className="mt-3 rounded-md bg-violet-50 px-3 py-2 text-sm text-violet-900">
            {pause.reason === PauseReason.TIMED ? "Timed pause" : "Waiting for approval"}
            {countdown && <span data-testid="pause-countdown"> · {countdown}</span>}
            {pause.requiresRoles.length > 0 && <span className="block text-xs">Approvers need one of: {pause.requiresRoles.join(", ")}</span>}
          </div>
        )}
        {t.message && <p className="mt-3 text-sm text-slate-600">{t.message}</p>}
        {steps.length > 0 && (
          <ol className="mt-4 space-y-1.5 border-t border-slate-100 pt-3">
            {steps.map((st) => (
              <li key={st.ref} className="flex items-center justify-between gap-2 text-sm">
                <span className="text-slate-700">
                  {st.detail.case === "pause"
                    ? st.detail.value.untilApproved
                      ? "Manual approval"
                      : `Pause ${st.detail.value.duration ? duration(Number(st.detail.value.duration.seconds) * 1000) : ""}`
                    : `Deploy (${st.detail.case === "deployment" ? `${st.detail.value.step}/${st.detail.value.totalSteps}` : ""})`}
                  <span className="ml-2 font-mono text-xs text-slate-400">{st.ref}</span>
                </span>
                <StatusBadge status={statusName(st.status)} />
              </li>
            ))}
          </ol>
        )}
      </div>
    </Card>
  );
}

function History({ p }: { p: Pipeline }) {
  return (
    <Card>
      <CardHeader title="Approvals and aborts" />
      {p.decisions.length === 0 ? (
        <EmptyState title="Nobody has approved or aborted this deployment yet" />
      ) : (
        <Table head={["When", "Action", "Who", "Step"]}>
          {p.decisions.map((d, i) => (
            <tr key={i} data-testid="decision-row">
              <td className={td}>{when(d.time)}</td>
              <td className={td}>
                <Tag>{DecisionAction[d.action]}</Tag>
              </td>
              <td className={td}>
                {d.actor?.name || "—"}
                {d.actor?.roles.length ? <span className="block text-xs text-slate-500">{d.actor.roles.join(", ")}</span> : null}
              </td>
              <td className={`${td} font-mono text-xs`}>{[d.target, d.step].filter(Boolean).join(" · ") || "pipeline"}</td>
            </tr>
          ))}
        </Table>
      )}
    </Card>
  );
}
