/**
 * The injector's serving certificate, kept in one Secret that every injector
 * replica shares (`trellis-injector-tls` in trellis-system): `tls.crt`,
 * `tls.key`, `ca.crt` (the webhook CA bundle: the current CA, plus the
 * previous one until it expires) and `ca.key` (the current CA's key, so any
 * replica can renew).
 *
 * Each round (`sync`) reads the Secret and decides (servingCertDecision):
 * keep it, renew the serving certificate, or renew the CA. A write is a
 * create, or an update guarded by the resourceVersion it read; on 409
 * another replica wrote first, so the round starts over and adopts what that
 * replica wrote. Two replicas therefore always end up serving the same pair.
 * A failed round keeps the current pair serving (it is replaced whole or not
 * at all) and is retried next round.
 */
import { X509Certificate } from 'node:crypto';
import type { Logger } from '@trellis/shared';
import { KubernetesError, KubernetesErrorCode, type KubeClient, type KubeObject } from '@trellis/kubernetes';
import { InjectorError } from '../errors/injector-error';
import { validateServingPair, type CertSource, type ServingPair } from '../webhook/serving-cert';
import { issueServingCert, makeWebhookCa, servingCertDecision, type CertWindows, type PemPair } from './webhook-certificates';

/** Settings of the Secret-backed source. */
export interface SecretCertSourceOptions {
  client: KubeClient;
  namespace: string;
  secretName: string;
  /** Names the API server dials (the Service's DNS names). */
  dnsNames: readonly string[];
  /** IP SANs (a webhook registered by url on 127.0.0.1, as in tests). */
  ipAddresses?: readonly string[];
  /** Webhook CA lifetime (default 10 years). */
  caValidityMs?: number;
  /** Serving certificate lifetime (default 90 days). */
  certValidityMs?: number;
  logger: Logger;
  clock?: () => Date;
}

interface SecretObject extends KubeObject {
  data?: Record<string, string>;
  type?: string;
}

const YEAR_MS = 365 * 86_400_000;

function b64(s: string): string {
  return Buffer.from(s, 'utf8').toString('base64');
}
function unb64(s: string | undefined): string {
  return s === undefined ? '' : Buffer.from(s, 'base64').toString('utf8');
}
function certsIn(bundlePem: string): X509Certificate[] {
  return (bundlePem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((p) => new X509Certificate(p));
}

/** A serving pair from the shared Secret, renewed before expiry by whichever replica sees it due first. */
export class SecretCertSource implements CertSource {
  private pair!: ServingPair;
  private bundle = '';
  private readonly listeners: Array<(p: ServingPair) => void> = [];
  private readonly clock: () => Date;

  private constructor(private readonly opts: SecretCertSourceOptions) {
    this.clock = opts.clock ?? (() => new Date());
  }

  /** Reads (or makes) the Secret once; throws when no usable pair can be had. */
  static async start(opts: SecretCertSourceOptions): Promise<SecretCertSource> {
    const s = new SecretCertSource(opts);
    await s.sync();
    return s;
  }

  current(): ServingPair {
    return this.pair;
  }

  /** The PEM CA bundle that verifies the served certificate (for the webhooks' caBundle). */
  caBundlePem(): string {
    return this.bundle;
  }

  onChange(listener: (pair: ServingPair) => void): void {
    this.listeners.push(listener);
  }

  close(): void {
    this.listeners.length = 0;
  }

  private path(): string {
    return `/api/v1/namespaces/${encodeURIComponent(this.opts.namespace)}/secrets/${encodeURIComponent(this.opts.secretName)}`;
  }

  /** One round: read, decide, write if needed, adopt. Resolves true when the served pair changed. */
  async sync(): Promise<boolean> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const secret = await this.opts.client.getOrNull<SecretObject>(this.path());
      const now = this.clock();
      const windows = this.windows(secret);
      const d = servingCertDecision(windows, this.opts.dnsNames, now);
      if (d.action === 'keep') return this.adopt(secret!);
      this.opts.logger.info('webhook serving certificate renewal', { reason: d.reason, secret: `${this.opts.namespace}/${this.opts.secretName}` });
      const data = secret?.data ?? {};
      let ca: PemPair;
      let bundle: string;
      if (d.action === 'renew-ca') {
        ca = await makeWebhookCa(now, this.opts.caValidityMs ?? 10 * YEAR_MS);
        // The previous CA stays in the bundle until it expires: certificates it signed still verify meanwhile.
        const previous = certsIn(unb64(data['ca.crt'])).filter((c) => new Date(c.validTo).getTime() > now.getTime()).slice(0, 1);
        bundle = [ca.certPem, ...previous.map((c) => c.toString())].join('');
      } else {
        ca = { certPem: certsIn(unb64(data['ca.crt']))[0]!.toString(), keyPem: unb64(data['ca.key']) };
        bundle = unb64(data['ca.crt']);
      }
      const leaf = await issueServingCert(ca, { dnsNames: this.opts.dnsNames, ipAddresses: this.opts.ipAddresses, now, validityMs: this.opts.certValidityMs ?? 90 * 86_400_000 });
      const next: SecretObject = {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { ...(secret?.metadata ?? {}), name: this.opts.secretName, namespace: this.opts.namespace, labels: { ...(secret?.metadata?.labels ?? {}), 'app.kubernetes.io/part-of': 'trellis' } },
        type: 'Opaque',
        data: { 'tls.crt': b64(leaf.certPem), 'tls.key': b64(leaf.keyPem), 'ca.crt': b64(bundle), 'ca.key': b64(ca.keyPem) },
      };
      try {
        const written = secret
          ? await this.opts.client.replace<SecretObject>(this.path(), next)
          : await this.opts.client.create<SecretObject>(`/api/v1/namespaces/${encodeURIComponent(this.opts.namespace)}/secrets`, next);
        return this.adopt(written);
      } catch (err) {
        // Another replica wrote first: read again and take what it wrote.
        if (err instanceof KubernetesError && err.code === KubernetesErrorCode.CONFLICT) continue;
        throw err;
      }
    }
    throw new InjectorError('TRELLIS_INJECTOR_BAD_CERT', `${this.opts.namespace}/${this.opts.secretName}: kept losing the update race; giving up this round`);
  }

  private windows(secret: SecretObject | null): CertWindows {
    const data = secret?.data ?? {};
    try {
      const [ca] = certsIn(unb64(data['ca.crt']));
      const caKey = unb64(data['ca.key']);
      if (!ca || !caKey) return { ca: null, cert: null };
      const caWindow = { notBefore: new Date(ca.validFrom), notAfter: new Date(ca.validTo) };
      const certPem = unb64(data['tls.crt']);
      if (!certPem || !unb64(data['tls.key'])) return { ca: caWindow, cert: null };
      const leaf = new X509Certificate(certPem);
      const dnsNames = (leaf.subjectAltName ?? '').split(', ').filter((s) => s.startsWith('DNS:')).map((s) => s.slice(4));
      const issuedByCa = leaf.checkIssued(ca) && leaf.verify(ca.publicKey);
      return { ca: caWindow, cert: { notBefore: new Date(leaf.validFrom), notAfter: new Date(leaf.validTo), dnsNames, issuedByCa } };
    } catch {
      // Unparsable material is replaced, as if absent.
      return { ca: null, cert: null };
    }
  }

  private adopt(secret: SecretObject): boolean {
    const data = secret.data ?? {};
    const pair = validateServingPair(unb64(data['tls.crt']), unb64(data['tls.key']), `Secret ${this.opts.namespace}/${this.opts.secretName}`);
    this.bundle = unb64(data['ca.crt']);
    if (this.pair && this.pair.certPem === pair.certPem && this.pair.keyPem === pair.keyPem) return false;
    const first = !this.pair;
    this.pair = pair;
    if (!first) for (const l of this.listeners) l(pair);
    return true;
  }
}
