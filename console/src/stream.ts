// useStream keeps one server stream open while a page shows it: it reconnects with a
// growing delay when the stream breaks, tells the page while it does, and stops for errors
// that another attempt cannot fix (no permission, not implemented by this server).
import { useEffect, useRef, useState } from "react";
import { Code, ConnectError } from "@connectrpc/connect";
import { useSession } from "./session";

export interface StreamState {
  /** true while the stream is being (re)opened after a failure. */
  reconnecting: boolean;
  /** a lasting error: the stream is not retried. */
  error: unknown;
}

const FATAL = new Set([Code.PermissionDenied, Code.Unimplemented, Code.NotFound, Code.InvalidArgument]);

/**
 * run opens the stream with the given signal and consumes it; it is called again after the
 * stream ends or fails. Changing deps restarts it.
 */
export function useStream(
  run: (signal: AbortSignal, live: () => void) => Promise<void>,
  deps: unknown[],
): StreamState {
  const [state, setState] = useState<StreamState>({ reconnecting: false, error: null });
  const session = useSession();
  const runRef = useRef(run);
  runRef.current = run;
  useEffect(() => {
    const ctl = new AbortController();
    let delay = 500;
    (async () => {
      setState({ reconnecting: false, error: null });
      while (!ctl.signal.aborted) {
        const started = Date.now();
        try {
          await runRef.current(ctl.signal, () => setState({ reconnecting: false, error: null }));
          if (ctl.signal.aborted) return;
        } catch (err) {
          if (ctl.signal.aborted) return;
          if (err instanceof ConnectError && err.code === Code.Unauthenticated) {
            // The token ended (expiry, sign-out, removal): the session decides.
            const still = await session.recheck();
            if (!still) return;
          } else if (err instanceof ConnectError && FATAL.has(err.code)) {
            setState({ reconnecting: false, error: err });
            return;
          }
        }
        if (Date.now() - started > 10_000) delay = 500;
        setState((s) => ({ ...s, reconnecting: true }));
        await sleep(delay, ctl.signal);
        delay = Math.min(delay * 2, 8_000);
      }
    })();
    return () => ctl.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);
  return state;
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** Re-renders every interval ms; for ages and countdowns. */
export function useNow(interval = 1000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), interval);
    return () => clearInterval(t);
  }, [interval]);
  return now;
}
