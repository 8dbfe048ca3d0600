import { useState } from "react";
import { infra } from "../api";
import { useSession } from "../session";
import { useNow, useStream } from "../stream";
import { WatchAgentsResponse_Type, type Agent } from "../gen/sortie/infra/v1/infra_pb";
import { Card, CardHeader, CopyButton, EmptyState, ErrorMessage, Field, PageHeader, StreamIndicator, Table, Tag, inputClass, td } from "../components/ui";
import { ago, when } from "../time";
import { timestampDate } from "@bufbuild/protobuf/wkt";

export function AgentsPage() {
  const s = useSession();
  const [agents, setAgents] = useState<Map<string, Agent>>(new Map());
  const now = useNow();

  const stream = useStream(
    async (signal, live) => {
      // The current agents first (the stream only tells connects and disconnects), then the
      // changes; a fresh list every 15 s keeps the heartbeat times current.
      const res = await infra.listAgents({}, { signal });
      setAgents(new Map(res.agents.map((a) => [a.streamId, a])));
      live();
      const poll = setInterval(() => {
        infra
          .listAgents({}, { signal })
          .then((r) =>
            setAgents((m) => {
              const next = new Map(m);
              for (const a of r.agents) if (next.has(a.streamId)) next.set(a.streamId, a);
              return next;
            }),
          )
          .catch(() => {});
      }, 15_000);
      try {
        for await (const ev of infra.watchAgents({}, { signal })) {
          live();
          const a = ev.agent;
          if (!a) continue;
          setAgents((m) => {
            const next = new Map(m);
            if (ev.type === WatchAgentsResponse_Type.DISCONNECTED) next.delete(a.streamId);
            else next.set(a.streamId, a);
            return next;
          });
        }
      } finally {
        clearInterval(poll);
      }
    },
    [s.epoch],
  );

  const list = [...agents.values()].sort(
    (a, b) => a.agentIdentifier.localeCompare(b.agentIdentifier) || Number(a.connectTime?.seconds ?? 0) - Number(b.connectTime?.seconds ?? 0),
  );

  return (
    <>
      <PageHeader
        title="Agents"
        description={`The agents connected to environment ${s.envName}: one row per agent replica.`}
        actions={<StreamIndicator reconnecting={stream.reconnecting} />}
      />
      <ErrorMessage error={stream.error} className="mb-4" />
      <Card>
        {list.length === 0 ? (
          <EmptyState title="No agent is connected">
            Install an agent in a cluster with the command below; it shows up here as soon as it connects.
          </EmptyState>
        ) : (
          <Table head={["Agent", "Version", "Kubernetes", "Connected since", "Heartbeat", "Address"]}>
            {list.map((a) => {
              const hb = a.lastHeartbeatTime ? now - timestampDate(a.lastHeartbeatTime).getTime() : 0;
              return (
                <tr key={a.streamId} data-testid="agent-row">
                  <td className={td}>
                    <div data-testid="agent-identifier" className="font-medium text-slate-900">
                      {a.agentIdentifier}
                    </div>
                    <div className="font-mono text-xs text-slate-500" title="agent instance">
                      {a.agentInstanceUuid}
                    </div>
                  </td>
                  <td className={td}>
                    <Tag>{a.agentVersion || "unknown"}</Tag>
                  </td>
                  <td className={td}>{a.kubernetesVersion || "—"}</td>
                  <td className={td}>
                    <div>{when(a.connectTime)}</div>
                    <div className="text-xs text-slate-500">{ago(a.connectTime, now)}</div>
                  </td>
                  <td className={td}>
                    <span data-testid="heartbeat-age" className={hb > 60_000 ? "font-medium text-amber-700" : ""}>
                      {ago(a.lastHeartbeatTime, now)}
                    </span>
                  </td>
                  <td className={`${td} font-mono text-xs`}>{a.ipAddress || "—"}</td>
                </tr>
              );
            })}
          </Table>
        )}
      </Card>
      <InstallCommand />
    </>
  );
}

function InstallCommand() {
  const [id, setId] = useState("my-cluster");
  const valid = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(id);
  const cmd =
    `curl -fsS -H "Authorization: Bearer $TOKEN" \\\n` +
    `  "${location.origin}/kubernetes/agent/manifest?agentIdentifier=${encodeURIComponent(id)}" \\\n` +
    `  | kubectl apply -f -`;
  return (
    <Card className="mt-8">
      <CardHeader title="Connect a new cluster" />
      <div className="space-y-4 p-4">
        <p className="text-sm text-slate-600">
          The manifest creates a credential <code className="font-mono">agent-{id || "…"}</code> with the Remote Network Agent role and
          installs the agent (2 replicas) in namespace <code className="font-mono">sortie</code>. <code className="font-mono">$TOKEN</code> is
          an access token with the <code className="font-mono">manage:credentials</code> scope (from <code className="font-mono">POST /oauth/token</code>{" "}
          with a credential of this environment). Each identifier can be issued once.
        </p>
        <div className="max-w-sm">
          <Field label="Agent identifier" hint="The account name deployment targets use.">
            <input className={inputClass} value={id} onChange={(e) => setId(e.target.value.trim())} />
          </Field>
        </div>
        {!valid && <ErrorMessage error="The identifier must be lowercase letters, digits and '-', at most 63 characters." />}
        <div className="flex items-start gap-2 rounded-md bg-slate-900 p-3">
          <pre data-testid="install-command" className="min-w-0 flex-1 overflow-x-auto font-mono text-xs leading-relaxed text-slate-100">
            {cmd}
          </pre>
          <CopyButton value={cmd} label="Copy command" />
        </div>
      </div>
    </Card>
  );
}
