import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";

export function toDate(t: Timestamp | undefined): Date | null {
  return t ? timestampDate(t) : null;
}

/** "3s", "4m 10s", "2h 5m", "3d 4h". */
export function duration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

export function ago(t: Timestamp | undefined, now: number): string {
  const d = toDate(t);
  return d ? `${duration(now - d.getTime())} ago` : "—";
}

export function when(t: Timestamp | undefined): string {
  const d = toDate(t);
  return d ? d.toLocaleString() : "—";
}
