// The console's one way to the server: Connect clients over connect-web on the same origin,
// carrying the session cookie (credentials: same-origin) and the CSRF header the server
// checks on every request made with that cookie.
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { IdentityService } from "./gen/sortie/identity/v1/identity_pb";
import { InfrastructureService } from "./gen/sortie/infra/v1/infra_pb";
import { DeploymentService } from "./gen/sortie/deploy/v1/deploy_pb";

/** The value of the readable sortie_csrf cookie, or "" when there is none. */
export function csrfToken(): string {
  for (const part of document.cookie.split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === "sortie_csrf") return decodeURIComponent(v.join("="));
  }
  return "";
}

const csrf: Interceptor = (next) => async (req) => {
  const t = csrfToken();
  if (t) req.header.set("X-CSRF-Token", t);
  return next(req);
};

const transport = createConnectTransport({
  baseUrl: location.origin,
  // connect-web v2 has no credentials option: the fetch it uses sends same-origin
  // credentials explicitly (the session cookie), and never to another origin.
  fetch: (input, init) => globalThis.fetch(input, { ...init, credentials: "same-origin" }),
  interceptors: [csrf],
});

export const identity = createClient(IdentityService, transport);
export const infra = createClient(InfrastructureService, transport);
export const deploy = createClient(DeploymentService, transport);

/** POSTs to one of the server's /auth/* endpoints with the CSRF header. */
export async function postAuth(path: string, body?: unknown): Promise<void> {
  const headers: Record<string, string> = { "X-CSRF-Token": csrfToken() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) throw new Error(await httpMessage(res));
}

/** The message of a failed HTTP reply: the error contract's "message", else the status. */
export async function httpMessage(res: Response): Promise<string> {
  const text = await res.text().catch(() => "");
  try {
    const j = JSON.parse(text);
    const m = j.message ?? j.error_description ?? j.detail ?? j.title ?? j.error;
    if (typeof m === "string" && m) return m;
  } catch {
    /* not JSON */
  }
  return `${res.status} ${res.statusText || "request failed"}`.trim();
}

export function isCode(err: unknown, code: Code): boolean {
  return err instanceof ConnectError && err.code === code;
}

/** A message for people: the server's own text, or a plain description of what failed. */
export function errorText(err: unknown): string {
  if (err instanceof ConnectError) {
    if (err.code === Code.Unimplemented) return "This server does not offer this yet.";
    if (err.code === Code.Unavailable && !err.rawMessage) return "The server cannot be reached.";
    return err.rawMessage || Code[err.code];
  }
  if (err instanceof Error) return err.message;
  return String(err);
}

export { Code, ConnectError };
