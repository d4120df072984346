/**
 * The replicas' attestation records on the API server, one ConfigMap per
 * SVID: `trellis-attestation-<serial>` in the control plane's namespace,
 * labelled `trellis.dev/attestation-record=true`, key `record.json` (the
 * record's JSON, attestation-record.ts). Created once and never updated (an
 * SVID's attestation does not change), so a write is one small create that
 * conflicts with nothing, whatever the number of records; every replica
 * reads them through one watch of that label (the cache `recall` reads).
 * The replica holding the Lease deletes the records of expired SVIDs every
 * few minutes, from that cache, as kube-token-uses.ts does for token uses,
 * and as Kubernetes' own CSR cleaner does for CertificateSigningRequests.
 */
import { collectionPath, KubernetesError, KubernetesErrorCode, startInformer, type KubeClient, type KubeList, type KubeObject, type ResourceInformer } from '@trellis/kubernetes';
import type { Logger } from '@trellis/shared';
import { attestationRecordJson, attestationSerial, parseAttestationRecord, type AttestationEntry } from '../attestation/attestation-record';
import type { AttestationRecordCollection } from '../attestation/attestation-record-collection';
import { ControlPlaneError, ControlPlaneErrorCode } from '../errors/control-plane-error';

/** The label every record carries (what the watch selects). */
export const ATTESTATION_RECORD_LABEL = 'trellis.dev/attestation-record';
/** The data key holding the record. */
export const ATTESTATION_RECORD_KEY = 'record.json';
const NAME_PREFIX = 'trellis-attestation-';

/** The object name of the record of SVID `serial` (normalised lower-case hex: a valid name). */
export function attestationRecordName(serial: string): string {
  return `${NAME_PREFIX}${serial}`;
}

interface ConfigMap extends KubeObject {
  data?: Record<string, string>;
}

/** Attestation records as create-only ConfigMaps, watched by label. */
export class KubeAttestationRecords implements AttestationRecordCollection {
  private readonly records = new Map<string, AttestationEntry>();
  /** Objects that did not parse, by name (logged once each). */
  private readonly rejected = new Set<string>();
  private informer: ResourceInformer<ConfigMap> | null = null;
  private sweeper: NodeJS.Timeout | null = null;

  constructor(
    private readonly opts: { namespace: string; sweepEveryMs?: number },
    private readonly deps: { client: KubeClient; logger: Logger; isLeader(): boolean; nowMs?: () => number },
  ) {}

  private collection(): string {
    return collectionPath('v1', 'ConfigMap', this.opts.namespace);
  }

  /** Starts the watch, and the sweep of expired records (which only the leader runs). */
  start(): void {
    this.informer = startInformer<ConfigMap>(this.deps.client, this.collection(), { labelSelector: `${ATTESTATION_RECORD_LABEL}=true`, logger: this.deps.logger });
    this.informer.on('add', (o) => this.observe(o));
    this.informer.on('update', (o) => this.observe(o));
    this.informer.on('delete', (o) => this.forget(o));
    this.sweeper = setInterval(() => void this.sweep(), this.opts.sweepEveryMs ?? 300_000);
    this.sweeper.unref();
  }

  /** Resolves once the records have been listed. */
  async synced(): Promise<void> {
    await this.informer?.synced();
  }

  async add(serial: string, entry: AttestationEntry): Promise<void> {
    const name = attestationRecordName(serial);
    const text = JSON.stringify(attestationRecordJson(entry));
    const body: ConfigMap = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name, namespace: this.opts.namespace, labels: { 'app.kubernetes.io/part-of': 'trellis', [ATTESTATION_RECORD_LABEL]: 'true' } },
      data: { [ATTESTATION_RECORD_KEY]: text },
    };
    try {
      this.observe(await this.deps.client.create<ConfigMap>(this.collection(), body));
    } catch (err) {
      if (!(err instanceof KubernetesError && err.code === KubernetesErrorCode.CONFLICT)) {
        throw new ControlPlaneError(ControlPlaneErrorCode.ATTESTATION_STORE, `attestation record ${this.opts.namespace}/${name} could not be written on the API server: ${(err as Error).message}`, { object: name, reason: (err as { code?: string }).code ?? 'error' }, { cause: err });
      }
      // Already there: our own earlier create whose answer was lost counts as written; anything else is refused.
      let existing: ConfigMap | null;
      try {
        existing = await this.existing(name);
      } catch (readErr) {
        throw new ControlPlaneError(ControlPlaneErrorCode.ATTESTATION_STORE, `attestation record ${this.opts.namespace}/${name} exists and cannot be read back: ${(readErr as Error).message}`, { object: name, reason: (readErr as { code?: string }).code ?? 'error' }, { cause: readErr });
      }
      if (existing?.data?.[ATTESTATION_RECORD_KEY] !== text) {
        throw new ControlPlaneError(ControlPlaneErrorCode.ATTESTATION_STORE, `attestation record ${this.opts.namespace}/${name} exists with other content; not overwritten`, { object: name, reason: 'CONFLICT' }, { cause: err });
      }
      this.observe(existing);
    }
  }

  get(serial: string): AttestationEntry | null {
    return this.records.get(serial) ?? null;
  }

  entries(): Iterable<AttestationEntry> {
    return this.records.values();
  }

  /** How many records are held (for tests and diagnostics). */
  get size(): number {
    return this.records.size;
  }

  /** Deletes the records of SVIDs expired at now (the leader only); returns how many. A failure only delays the sweep. */
  async sweep(): Promise<number> {
    if (!this.deps.isLeader() || !this.informer) return 0;
    const now = (this.deps.nowMs ?? Date.now)();
    let deleted = 0;
    try {
      for (const o of this.informer.list(this.opts.namespace)) {
        const serial = serialOf(o);
        const entry = serial === null ? null : this.records.get(serial);
        if (!entry || entry.notAfterMs > now || !o.metadata?.name) continue;
        if (await this.deps.client.delete(`${this.collection()}/${encodeURIComponent(o.metadata.name)}`)) deleted++;
      }
    } catch (err) {
      this.deps.logger.warn('expired attestation records not swept; trying again later', { error: err });
    }
    if (deleted > 0) this.deps.logger.info('expired attestation records deleted', { deleted });
    return deleted;
  }

  stop(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    void this.informer?.stop();
  }

  /** The object `name` read by a list limited to that name (the Role grants list on the kind, get only on named objects). */
  private async existing(name: string): Promise<ConfigMap | null> {
    const list = await this.deps.client.request<KubeList<ConfigMap>>('GET', this.collection(), { query: { fieldSelector: `metadata.name=${name}` } });
    return list.items[0] ?? null;
  }

  /** Takes a record from the watch or our own create; one that does not parse is logged once and attests nothing. */
  private observe(o: ConfigMap): void {
    const name = o.metadata?.name ?? '';
    const serial = serialOf(o);
    try {
      if (serial === null) throw new Error(`name: not ${NAME_PREFIX}<normalised hex serial>`);
      const text = o.data?.[ATTESTATION_RECORD_KEY];
      if (text === undefined) throw new Error(`data.${ATTESTATION_RECORD_KEY}: missing`);
      let raw: unknown;
      try {
        raw = JSON.parse(text);
      } catch (err) {
        throw new Error(`data.${ATTESTATION_RECORD_KEY}: not JSON (${(err as Error).message})`);
      }
      this.records.set(serial, parseAttestationRecord(raw));
      this.rejected.delete(name);
    } catch (err) {
      if (serial !== null) this.records.delete(serial);
      if (this.rejected.has(name)) return;
      this.rejected.add(name);
      this.deps.logger.error('attestation record does not parse; it attests the identity alone', { configMap: `${this.opts.namespace}/${name.slice(0, 80)}`, error: err });
    }
  }

  private forget(o: ConfigMap): void {
    const serial = serialOf(o);
    if (serial !== null) this.records.delete(serial);
    this.rejected.delete(o.metadata?.name ?? '');
  }
}

/** The serial an object's name carries, or null when it is not a record's name. */
function serialOf(o: KubeObject): string | null {
  const name = o.metadata?.name ?? '';
  if (!name.startsWith(NAME_PREFIX)) return null;
  const serial = attestationSerial(name.slice(NAME_PREFIX.length));
  return serial !== null && attestationRecordName(serial) === name ? serial : null;
}
