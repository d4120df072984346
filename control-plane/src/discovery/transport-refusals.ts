/**
 * Refusals grpc-js makes on its own, before a message reaches a session: a
 * message over the receive limit (RESOURCE_EXHAUSTED), a body it cannot
 * decompress or decode. Our own refusals already carry a `trellis-error-code`
 * trailer and are counted by the session; these do not, so this module names
 * them with a Trellis code, adds that code to the trailers, and reports it for
 * the stream-errors metric.
 *
 * grpc-js sends these statuses from its innermost call object
 * (`this.sendStatus(...)` in BaseServerInterceptingCall), which the first
 * server interceptor receives as its `call`; wrapping `sendStatus` on that
 * object is the one place that sees them. The integration test for a message
 * over the limit (64 KiB) pins this, so a grpc-js upgrade that moves it fails loudly.
 */
import { Metadata, ServerInterceptingCall, status, type ServerInterceptor, type StatusObject } from '@grpc/grpc-js';
import { ControlPlaneErrorCode } from '../errors/control-plane-error';
import { ERROR_CODE_METADATA_KEY } from '../errors/grpc-status';

type OutgoingStatus = Pick<StatusObject, 'code' | 'details'> & { metadata?: Metadata | null };

/**
 * The Trellis code for a status grpc-js chose itself, or null when the status
 * is OK or already carries a Trellis code (ours, counted where it was raised).
 * A RESOURCE_EXHAUSTED without a code can only be the receive-size limit: our
 * own RESOURCE_EXHAUSTED refusals always carry one.
 */
export function transportRefusalCode(s: { code: status; metadata?: Metadata | null }): string | null {
  if (s.code === status.OK) return null;
  if (s.metadata && s.metadata.get(ERROR_CODE_METADATA_KEY).length > 0) return null;
  if (s.code === status.RESOURCE_EXHAUSTED) return ControlPlaneErrorCode.MESSAGE_TOO_LARGE;
  return `GRPC_${status[s.code] ?? s.code}`;
}

/**
 * A server interceptor that tags grpc-js's own refusals with their Trellis
 * code (TRELLIS_CP_* codes only; `GRPC_*` names stay metric labels) and calls
 * `onRefusal(code)` once per refused call. Must be the first interceptor.
 */
export function transportRefusalInterceptor(onRefusal: (code: string) => void): ServerInterceptor {
  return (_method, call) => {
    const send = call.sendStatus.bind(call);
    let refused = false;
    call.sendStatus = (s: OutgoingStatus): void => {
      const code = transportRefusalCode(s);
      if (code === null) return send(s);
      if (!refused) onRefusal(code);
      refused = true;
      if (!code.startsWith('TRELLIS_')) return send(s);
      const metadata = s.metadata ? s.metadata.clone() : new Metadata();
      metadata.set(ERROR_CODE_METADATA_KEY, code);
      send({ ...s, details: `${s.details} [${code}]`, metadata });
    };
    // A pass-through layer: every status sent through the chain reaches the wrapped sendStatus too.
    return new ServerInterceptingCall(call);
  };
}
