/**
 * The attestation records as one shared document (`{version: 1, records:
 * {<serial>: record}}`, compact JSON): the form replicas share on the
 * Kubernetes API server, in one key of one ConfigMap, through the same
 * SharedDocument machinery as the revocation list. Bounded: every change
 * drops the records whose SVID has expired, and a document that would
 * outgrow what a ConfigMap holds is refused rather than written (its
 * records then stay on the replica that issued them, shared-attestation-store.ts).
 */
import { ControlPlaneError, ControlPlaneErrorCode } from '../errors/control-plane-error';
import type { DocumentCodec } from '../state/shared-document';
import { attestationRecordJson, attestationSerial, parseAttestationRecord, type AttestationEntry } from './attestation-record';

/** The records, by normalised serial. */
export interface AttestationSet {
  readonly records: ReadonlyMap<string, AttestationEntry>;
  /** Records of the stored text that did not parse (`<serial>: <reason>`): left out, they attest nothing, and dropped by the next change. */
  readonly rejected: readonly string[];
}

/**
 * The largest document written, in bytes: a ConfigMap's data may hold 1 MiB
 * (1,048,576 bytes); the rest is left for the key and headroom. At about
 * 250 bytes a record, some 4,000 live attested SVIDs.
 */
export const MAX_ATTESTATION_DOCUMENT_BYTES = 1_000_000;

const EMPTY: AttestationSet = Object.freeze({ records: new Map<string, AttestationEntry>(), rejected: Object.freeze([]) as readonly string[] });

/** Reads and writes the document; a bad envelope throws naming `source`, a bad record is left out and listed in `rejected`. */
export const attestationSetCodec: DocumentCodec<AttestationSet> = Object.freeze({
  empty: EMPTY,
  parse(text: string, source: string): AttestationSet {
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (err) {
      throw new Error(`${source}: not JSON (${(err as Error).message})`);
    }
    const doc = raw as { version?: unknown; records?: unknown };
    if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw new Error(`${source}: not an object`);
    if (doc.version !== 1) throw new Error(`${source}: version: ${JSON.stringify(doc.version)?.slice(0, 20)} is not 1`);
    if (!doc.records || typeof doc.records !== 'object' || Array.isArray(doc.records)) throw new Error(`${source}: records: not an object`);
    const records = new Map<string, AttestationEntry>();
    const rejected: string[] = [];
    for (const [key, value] of Object.entries(doc.records as Record<string, unknown>)) {
      const serial = attestationSerial(key);
      if (serial === null || serial !== key) {
        rejected.push(`${key.slice(0, 64)}: not a normalised hex serial`);
        continue;
      }
      try {
        records.set(serial, parseAttestationRecord(value));
      } catch (err) {
        rejected.push(`${serial}: ${(err as Error).message}`);
      }
    }
    return Object.freeze({ records, rejected: Object.freeze(rejected) });
  },
  format(doc: AttestationSet): string {
    const records: Record<string, unknown> = {};
    for (const [serial, entry] of doc.records) records[serial] = attestationRecordJson(entry);
    return JSON.stringify({ version: 1, records }) + '\n';
  },
});

/**
 * `doc` with `added` recorded and every record expired at `nowMs` dropped
 * (pure). Throws TRELLIS_CP_ATTESTATION_STORE (reason TOO_LARGE) when the
 * result would be over `maxBytes` formatted: nothing is written then.
 */
export function withAttestations(doc: AttestationSet, added: ReadonlyArray<{ serial: string; entry: AttestationEntry }>, nowMs: number, maxBytes = MAX_ATTESTATION_DOCUMENT_BYTES): AttestationSet {
  const records = new Map<string, AttestationEntry>();
  for (const [serial, entry] of doc.records) if (entry.notAfterMs > nowMs) records.set(serial, entry);
  for (const a of added) if (a.entry.notAfterMs > nowMs) records.set(a.serial, a.entry);
  const next: AttestationSet = Object.freeze({ records, rejected: Object.freeze([]) as readonly string[] });
  const bytes = Buffer.byteLength(attestationSetCodec.format(next));
  if (bytes > maxBytes) {
    throw new ControlPlaneError(
      ControlPlaneErrorCode.ATTESTATION_STORE,
      `the shared attestation records would be ${bytes} bytes (${records.size} live SVIDs), over the ${maxBytes} a ConfigMap holds; kept on this replica only (about 4,000 live attested SVIDs fit: docs/kubernetes.md, State shared by the replicas)`,
      { reason: 'TOO_LARGE', bytes, records: records.size },
    );
  }
  return next;
}

/** The record of `serial` in `doc` while its SVID is live at `nowMs`, or null. */
export function lookupAttestation(doc: AttestationSet, serial: string, nowMs: number): AttestationEntry | null {
  const entry = doc.records.get(serial);
  return entry && entry.notAfterMs > nowMs ? entry : null;
}
