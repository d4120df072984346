/**
 * The attestation records as one document (`{version: 1, records:
 * {<serial>: record}}`): the form the previous version shared on the
 * Kubernetes API server, in key `attestations.json` of ConfigMap
 * `trellis-attestations`. One object held every record, so it capped the
 * mesh at what a ConfigMap holds (1 MiB, about 4,000 live attested SVIDs)
 * and each issuance rewrote all of them; records are now one object each
 * (attestation-record-collection.ts). This document is still read, never
 * written, so an upgraded control plane honours the records the previous
 * version wrote until they expire.
 */
import type { DocumentCodec } from '../state/shared-document';
import { attestationRecordJson, attestationSerial, parseAttestationRecord, type AttestationEntry } from './attestation-record';

/** The records, by normalised serial. */
export interface AttestationSet {
  readonly records: ReadonlyMap<string, AttestationEntry>;
  /** Records of the stored text that did not parse (`<serial>: <reason>`): left out, they attest nothing, and dropped by the next change. */
  readonly rejected: readonly string[];
}

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

/** The record of `serial` in `doc` while its SVID is live at `nowMs`, or null. */
export function lookupAttestation(doc: AttestationSet, serial: string, nowMs: number): AttestationEntry | null {
  const entry = doc.records.get(serial);
  return entry && entry.notAfterMs > nowMs ? entry : null;
}
