// The targets of a pipeline as a left-to-right layered graph: a target's column is the
// length of the longest dependsOn chain before it.
import type { Target } from "../gen/sortie/deploy/v1/deploy_pb";
import { Status } from "../gen/sortie/deploy/v1/deploy_pb";

const W = 184;
const H = 60;
const GX = 64;
const GY = 20;

const fill: Partial<Record<Status, string>> = {
  [Status.RUNNING]: "fill-sky-50 stroke-sky-400",
  [Status.PAUSED]: "fill-violet-50 stroke-violet-400",
  [Status.AWAITING_APPROVAL]: "fill-amber-50 stroke-amber-400",
  [Status.SUCCEEDED]: "fill-emerald-50 stroke-emerald-400",
  [Status.FAILED]: "fill-rose-50 stroke-rose-400",
  [Status.CANCELLED]: "fill-zinc-100 stroke-zinc-400",
};

export function layers(targets: Target[]): Map<string, number> {
  const byName = new Map(targets.map((t) => [t.name, t]));
  const depth = new Map<string, number>();
  // onPath holds the targets of the chain being followed, so a cycle (which the server
  // refuses anyway) ends instead of recursing forever.
  const onPath = new Set<string>();
  const visit = (name: string): number => {
    const known = depth.get(name);
    if (known !== undefined) return known;
    const t = byName.get(name);
    if (!t) return 0;
    onPath.add(name);
    let d = 0;
    for (const dep of t.dependsOn) if (byName.has(dep) && !onPath.has(dep)) d = Math.max(d, visit(dep) + 1);
    onPath.delete(name);
    depth.set(name, d);
    return d;
  };
  for (const t of targets) visit(t.name);
  return depth;
}

export function PipelineGraph({ targets }: { targets: Target[] }) {
  if (targets.length === 0) return <p className="text-sm text-slate-500">This pipeline has no targets.</p>;
  const depth = layers(targets);
  const cols: Target[][] = [];
  for (const t of targets) (cols[depth.get(t.name) ?? 0] ??= []).push(t);
  const pos = new Map<string, { x: number; y: number }>();
  cols.forEach((col, c) => col.forEach((t, r) => pos.set(t.name, { x: c * (W + GX), y: r * (H + GY) })));
  const width = cols.length * (W + GX) - GX + 2;
  const height = Math.max(...cols.map((c) => c.length)) * (H + GY) - GY + 2;
  return (
    <div className="overflow-x-auto">
      <svg data-testid="pipeline-graph" width={width} height={height} viewBox={`-1 -1 ${width} ${height}`} role="img" aria-label="Targets and their dependencies">
        {targets.flatMap((t) =>
          t.dependsOn
            .filter((d) => pos.has(d))
            .map((d) => {
              const a = pos.get(d)!;
              const b = pos.get(t.name)!;
              const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
              const mx = (x1 + x2) / 2;
              return <path key={`${d}->${t.name}`} d={`M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`} className="fill-none stroke-slate-300" strokeWidth={2} />;
            }),
        )}
        {targets.map((t) => {
          const { x, y } = pos.get(t.name)!;
          return (
            <a key={t.name} href={`#target-${t.name}`}>
              <g transform={`translate(${x},${y})`}>
                <rect width={W} height={H} rx={8} className={fill[t.status] ?? "fill-white stroke-slate-300"} strokeWidth={1.5} />
                <text x={12} y={22} className="fill-slate-900 text-[13px] font-semibold">
                  {t.name.length > 22 ? t.name.slice(0, 21) + "…" : t.name}
                </text>
                <text x={12} y={42} className="fill-slate-600 font-mono text-[11px]">
                  {Status[t.status]} · {t.weight}%
                </text>
              </g>
            </a>
          );
        })}
      </svg>
    </div>
  );
}
