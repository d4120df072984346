/**
 * The pod annotation the injector writes and the control plane reads: what
 * injection added to the pod, and which sidecar listener fronts each app
 * port. It is the contract between the two, so it has one home: the
 * injector (injector-webhook/src/inject/inject-pod.ts) writes it with
 * `JSON.stringify`, the control plane's Kubernetes registry reads it with
 * `parseInjectionStatus` to map EndpointSlice ports (app ports) to the
 * listener ports callers must dial.
 */

/** Pod annotation written by the injector (JSON). Its presence means "already injected". */
export const INJECTION_STATUS_ANNOTATION = 'sidecar.trellis.dev/status';

/** What the status annotation records. */
export interface InjectionStatus {
  version: 1;
  initContainers: string[];
  containers: string[];
  volumes: string[];
  /** App port → sidecar listener port. */
  inbound: Record<string, number>;
}

/** The parsed annotation: app port → listener port, or why it cannot be used. */
export type ParsedInjectionStatus = { readonly ok: true; readonly inbound: ReadonlyMap<number, number> } | { readonly ok: false; readonly problem: string };

const PORT = /^[0-9]{1,5}$/;

function isPort(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 65535;
}

/**
 * Reads the annotation's value (pure). Absent, not JSON, another version, or
 * an `inbound` entry that is not `"PORT": PORT` is a problem naming the
 * field: such a pod is treated as not injected (fails closed: no listener is
 * published for it).
 */
export function parseInjectionStatus(value: string | undefined): ParsedInjectionStatus {
  if (value === undefined) return { ok: false, problem: `no ${INJECTION_STATUS_ANNOTATION} annotation (not injected)` };
  let doc: unknown;
  try {
    doc = JSON.parse(value);
  } catch {
    return { ok: false, problem: `${INJECTION_STATUS_ANNOTATION}: not JSON` };
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) return { ok: false, problem: `${INJECTION_STATUS_ANNOTATION}: not a JSON object` };
  const d = doc as { version?: unknown; inbound?: unknown };
  if (d.version !== 1) return { ok: false, problem: `${INJECTION_STATUS_ANNOTATION}: /version: ${JSON.stringify(d.version)?.slice(0, 20)} is not 1` };
  const inbound = d.inbound ?? {};
  if (!inbound || typeof inbound !== 'object' || Array.isArray(inbound)) return { ok: false, problem: `${INJECTION_STATUS_ANNOTATION}: /inbound: not an object` };
  const out = new Map<number, number>();
  for (const [app, listen] of Object.entries(inbound as Record<string, unknown>)) {
    if (!PORT.test(app) || !isPort(Number(app))) return { ok: false, problem: `${INJECTION_STATUS_ANNOTATION}: /inbound: "${app.slice(0, 20)}" is not a port` };
    if (!isPort(listen)) return { ok: false, problem: `${INJECTION_STATUS_ANNOTATION}: /inbound/${app}: ${String(listen).slice(0, 20)} is not a port` };
    out.set(Number(app), listen);
  }
  return { ok: true, inbound: out };
}
