/** Polling for a condition in tests that watch real processes. */

/**
 * Resolves once `cond` returns true (a throw counts as false), polling every
 * `intervalMs`; rejects naming `what` after `ms`.
 */
export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms = 20_000, intervalMs = 100): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await Promise.resolve().then(cond).catch(() => false)) return;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}
