/**
 * The issuance audit trail: one JSON line per SVID appended to `audit.log`
 * in the CA dir. Lines hold the serial, SPIFFE ID, validity end, key type
 * and requester; never a key or a certificate.
 */
import { closeSync, openSync, writeSync } from 'node:fs';

/** One issuance, as written to the audit log. */
export interface AuditRecord {
  time: string;
  serial: string;
  spiffeId: string;
  notAfter: string;
  keyType: string;
  requester: string;
}

/** Where audit records go. */
export interface AuditSink {
  append(record: AuditRecord): void;
  close(): void;
}

/**
 * An append-only file sink. Each record is one `write(2)` on an O_APPEND
 * descriptor, so concurrent writers (several CLI runs) never interleave lines.
 */
export function openAuditLog(path: string): AuditSink {
  const fd = openSync(path, 'a', 0o640);
  let open = true;
  return {
    append(record) {
      writeSync(fd, JSON.stringify(record) + '\n');
    },
    close() {
      if (open) closeSync(fd);
      open = false;
    },
  };
}
