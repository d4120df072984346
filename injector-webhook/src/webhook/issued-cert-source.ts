/**
 * A serving certificate issued by a Trellis CA and renewed before it expires.
 *
 * The key is generated in memory for each issuance (EC P-256) and never
 * written anywhere; the CSR goes to the `issue` collaborator (the CLI wires
 * it to `CertificateAuthority.issue`). Renewal happens at a fraction of the
 * lifetime (half by default). A failed renewal is logged and retried while
 * the current certificate keeps serving: the state is replaced whole or not
 * at all.
 */
import { generateKeyPairSync } from 'node:crypto';
import { buildWorkloadCsr, type Logger, type SvidResource } from '@trellis/shared';
import { InjectorError } from '../errors/injector-error';
import { validateServingPair, type CertSource, type ServingPair } from './serving-cert';

/** Collaborators of the issued source. Timers are injected so tests drive them. */
export interface IssuedCertSourceDeps {
  /** Issues a certificate for the DER CSR. */
  issue(csrDer: Buffer): Promise<Pick<SvidResource, 'chainPem'>>;
  logger: Logger;
  clock?: () => Date;
  setTimer?: (fn: () => void, ms: number) => { cancel(): void };
  /** Renew at this fraction of the lifetime (default 0.5). */
  renewFraction?: number;
  /** Delay before retrying a failed renewal (default 5000 ms; never past expiry). */
  retryMs?: number;
}

/**
 * When to renew: at `fraction` of [notBefore, notAfter], in ms from `now`
 * (0 when already due). Pure.
 */
export function renewalDelayMs(now: Date, notBefore: Date, notAfter: Date, fraction = 0.5): number {
  const at = notBefore.getTime() + fraction * (notAfter.getTime() - notBefore.getTime());
  return Math.max(0, Math.floor(at - now.getTime()));
}

/** Serving pair issued by the CA, renewed on a timer. Create with {@link IssuedCertSource.start}. */
export class IssuedCertSource implements CertSource {
  private readonly listeners: Array<(p: ServingPair) => void> = [];
  private timer: { cancel(): void } | undefined;
  private closed = false;

  private constructor(private pair: ServingPair, private readonly deps: IssuedCertSourceDeps) {}

  /** Issues the first certificate (throws TRELLIS_INJECTOR_BAD_CERT if that fails) and schedules renewal. */
  static async start(deps: IssuedCertSourceDeps): Promise<IssuedCertSource> {
    const first = await issueOnce(deps);
    const src = new IssuedCertSource(first, deps);
    src.schedule();
    return src;
  }

  current(): ServingPair {
    return this.pair;
  }

  onChange(listener: (pair: ServingPair) => void): void {
    this.listeners.push(listener);
  }

  close(): void {
    this.closed = true;
    this.timer?.cancel();
  }

  /** Renews now; on failure keeps the current pair and schedules a retry. */
  async renew(): Promise<void> {
    try {
      const next = await issueOnce(this.deps);
      if (this.closed) return;
      this.pair = next;
      this.deps.logger.info('serving certificate renewed', { serial: next.serial, notAfter: next.notAfter.toISOString() });
      for (const l of this.listeners) l(next);
      this.schedule();
    } catch (err) {
      if (this.closed) return;
      const now = this.now();
      const left = this.pair.notAfter.getTime() - now.getTime();
      const retry = Math.max(0, Math.min(this.deps.retryMs ?? 5000, left));
      this.deps.logger.warn('serving certificate renewal failed; keeping the current one', { error: err, serial: this.pair.serial, retryMs: retry });
      this.timer = this.setTimer(() => void this.renew(), retry);
    }
  }

  private schedule(): void {
    if (this.closed) return;
    const leaf = this.pair;
    const delay = renewalDelayMs(this.now(), leaf.notBefore, leaf.notAfter, this.deps.renewFraction ?? 0.5);
    this.timer = this.setTimer(() => void this.renew(), delay);
  }

  private now(): Date {
    return (this.deps.clock ?? (() => new Date()))();
  }

  private setTimer(fn: () => void, ms: number): { cancel(): void } {
    if (this.deps.setTimer) return this.deps.setTimer(fn, ms);
    const t = setTimeout(fn, ms);
    t.unref();
    return { cancel: () => clearTimeout(t) };
  }
}

async function issueOnce(deps: IssuedCertSourceDeps): Promise<ServingPair> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  let chain: Pick<SvidResource, 'chainPem'>;
  try {
    // The shared workload CSR with no URI SAN: the CA decides every name in the certificate.
    chain = await deps.issue(buildWorkloadCsr(privateKey, publicKey.export({ type: 'spki', format: 'der' })));
  } catch (err) {
    throw new InjectorError('TRELLIS_INJECTOR_BAD_CERT', `the CA refused to issue the serving certificate: ${(err as Error).message}`, {}, { cause: err });
  }
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  return validateServingPair(chain.chainPem, keyPem, 'issued serving certificate');
}
