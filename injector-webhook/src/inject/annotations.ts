/**
 * The pod labels and annotations the injector reads, and parsers for their
 * values. A malformed value is an error naming the annotation, never a guess.
 */
import { INJECTION_STATUS_ANNOTATION, parsePort as sharedParsePort } from '@trellis/shared';
import { InjectorError } from '../errors/injector-error';

/** Pod label or annotation: "true" | "false". The label wins over the annotation. */
export const INJECT_KEY = 'sidecar.trellis.dev/inject';
/** Istio's equivalent of INJECT_KEY, honoured below ours so existing manifests keep their opt-outs. */
export const ISTIO_INJECT_KEY = 'sidecar.istio.io/inject';
/** Annotation: outbound upstreams, `SERVICE[.NAMESPACE]:PORT,...`. */
export const UPSTREAMS_ANNOTATION = 'sidecar.trellis.dev/upstreams';
/** Annotation: app ports that are neither proxied nor redirected, `PORT,...`. */
export const EXCLUDE_INBOUND_ANNOTATION = 'sidecar.trellis.dev/excludeInboundPorts';
/** Annotation: "true"/"false" overrides the config's nativeSidecar for this pod (e.g. "true" for Jobs). */
export const NATIVE_SIDECAR_ANNOTATION = 'sidecar.trellis.dev/nativeSidecar';
/** Annotation written by the injector: what it added (JSON). Its presence means "already injected". The control plane reads it too (shared). */
export const STATUS_ANNOTATION = INJECTION_STATUS_ANNOTATION;
/** Namespace label the webhook's namespaceSelector matches. */
export const NAMESPACE_LABEL = 'trellis-injection';
/** Tells kubectl which container `logs`/`exec` pick when none is named. */
export const DEFAULT_CONTAINER_ANNOTATION = 'kubectl.kubernetes.io/default-container';

/** One outbound upstream: the app dials 127.0.0.1:localPort, the sidecar connects to service:port over mTLS. */
export interface Upstream {
  readonly service: string;
  readonly port: number;
  readonly localPort: number;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/**
 * Parses `sidecar.trellis.dev/upstreams` ("payments:9001,ledger.finance:9002").
 * The local port equals the service port. Throws TRELLIS_INJECTOR_BAD_ANNOTATION
 * for a bad entry or a local port used twice.
 */
export function parseUpstreams(value: string | undefined): Upstream[] {
  if (value === undefined || value.trim() === '') return [];
  const out: Upstream[] = [];
  const seen = new Set<number>();
  for (const raw of value.split(',')) {
    const entry = raw.trim();
    if (entry === '') continue;
    const bad = (reason: string): never => {
      throw new InjectorError('TRELLIS_INJECTOR_BAD_ANNOTATION', `annotation ${UPSTREAMS_ANNOTATION}: entry "${entry}": ${reason}`, { annotation: UPSTREAMS_ANNOTATION, entry });
    };
    const colon = entry.lastIndexOf(':');
    if (colon <= 0) bad('expected SERVICE[.NAMESPACE]:PORT');
    const service = entry.slice(0, colon);
    const port = parsePort(entry.slice(colon + 1)) ?? bad('port must be an integer from 1 to 65535');
    const parts = service.split('.');
    if (parts.length > 2 || !parts.every((p) => p.length <= 63 && DNS_LABEL.test(p))) bad('service must be NAME or NAME.NAMESPACE (DNS labels)');
    if (seen.has(port)) bad(`local port ${port} is already used by another upstream`);
    seen.add(port);
    out.push({ service, port, localPort: port });
  }
  return out;
}

/** Parses a comma-separated port list annotation; throws TRELLIS_INJECTOR_BAD_ANNOTATION naming it. */
export function parsePortList(annotation: string, value: string | undefined): number[] {
  if (value === undefined || value.trim() === '') return [];
  return value.split(',').map((s) => s.trim()).filter((s) => s !== '').map((s) => {
    const p = parsePort(s);
    if (p === undefined) {
      throw new InjectorError('TRELLIS_INJECTOR_BAD_ANNOTATION', `annotation ${annotation}: "${s}" is not a port (1-65535)`, { annotation, entry: s });
    }
    return p;
  });
}

/** "true" → true, "false" → false, absent → undefined; anything else is an error naming where it was found. */
export function parseInjectFlag(value: string | undefined, where: 'label' | 'annotation', key: string = INJECT_KEY): boolean | undefined {
  if (value === undefined) return undefined;
  const v = value.trim().toLowerCase();
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw new InjectorError('TRELLIS_INJECTOR_BAD_ANNOTATION', `${where} ${key}: "${value}" must be "true" or "false"`, { [where]: key, value });
}

/** A "true"/"false" annotation; absent → undefined; anything else is TRELLIS_INJECTOR_BAD_ANNOTATION naming it. */
export function parseBooleanAnnotation(annotation: string, value: string | undefined): boolean | undefined {
  if (value === undefined) return undefined;
  const v = value.trim().toLowerCase();
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw new InjectorError('TRELLIS_INJECTOR_BAD_ANNOTATION', `annotation ${annotation}: "${value}" must be "true" or "false"`, { annotation, value });
}

/** A port from 1 to 65535 (the shared parser's rule, without the listener's 0). */
function parsePort(s: string): number | undefined {
  const n = sharedParsePort(s);
  return n === undefined || n === 0 ? undefined : n;
}
