// Sign-in with the authorization code flow and PKCE (RFC 7636). The verifier, the state and
// the path to come back to live in sessionStorage only for the length of the redirect; the
// session itself is the server's HttpOnly cookie.

export const CLIENT_ID = "sortie-console";
const KEY = "sortie.signin";
const LOOP_KEY = "sortie.signin.last";

export function redirectURI(): string {
  return `${location.origin}/console/callback`;
}

function base64url(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function randomString(n = 32): string {
  return base64url(crypto.getRandomValues(new Uint8Array(n)));
}

export async function challengeOf(verifier: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

interface Pending {
  verifier: string;
  state: string;
  returnTo: string;
}

/**
 * Whether a sign-in finished moments ago (the code was traded for the cookies): a server
 * that answers Unauthenticated right after that, as when the browser refuses the cookies,
 * must not send the browser round in circles.
 */
export function signInLooping(): boolean {
  const last = Number(sessionStorage.getItem(LOOP_KEY) ?? "0");
  return Date.now() - last < 15_000;
}

export function clearSignInLoop(): void {
  sessionStorage.removeItem(LOOP_KEY);
}

/** Records that a sign-in has just finished (see signInLooping). */
export function markSignedIn(): void {
  sessionStorage.setItem(LOOP_KEY, String(Date.now()));
}

/** Starts sign-in: remembers where to come back to and goes to the authorization endpoint. */
export async function startSignIn(returnTo: string): Promise<void> {
  const verifier = randomString(48);
  const state = randomString(16);
  const p: Pending = { verifier, state, returnTo };
  sessionStorage.setItem(KEY, JSON.stringify(p));
  const q = new URLSearchParams({
    response_type: "code",
    client_id: CLIENT_ID,
    redirect_uri: redirectURI(),
    state,
    code_challenge: await challengeOf(verifier),
    code_challenge_method: "S256",
  });
  location.assign(`/oauth/authorize?${q}`);
}

/** Takes the pending sign-in out of sessionStorage (once). */
export function takePending(): Pending | null {
  const raw = sessionStorage.getItem(KEY);
  sessionStorage.removeItem(KEY);
  if (!raw) return null;
  try {
    const p = JSON.parse(raw) as Pending;
    if (typeof p.verifier === "string" && typeof p.state === "string") return p;
  } catch {
    /* corrupt */
  }
  return null;
}

/** A return path is only ever a path of the console itself. */
export function safeReturn(path: string | undefined): string {
  if (path && path.startsWith("/console/") && !path.startsWith("/console/callback")) return path;
  return "/console/";
}
