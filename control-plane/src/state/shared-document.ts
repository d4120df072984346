/**
 * One piece of state shared by every replica, as a whole document: the
 * revocation list, the re-issue orders, the replicas' reports. Two
 * implementations: a file in the CA dir (file-document.ts: local mode, and
 * replicas sharing the dir) and a key of a ConfigMap on the Kubernetes API
 * server (kubernetes/config-map-document.ts). Updates are a pure change of
 * the document applied with optimistic concurrency: read the latest, change
 * it, write it only if nobody wrote in between (a lock file; the object's
 * resourceVersion), else read again and re-apply. A write that fails leaves
 * the previous document; a read that fails keeps the last good one.
 */

/** How a document is read and written. */
export interface DocumentCodec<T> {
  /** The document when none was ever written. */
  readonly empty: T;
  /** Parses stored text; throws naming `source` and the bad field. */
  parse(text: string, source: string): T;
  format(doc: T): string;
}

/** A document every replica reads and any may update. */
export interface SharedDocument<T> {
  /** The document as last read. */
  current(): T;
  /** Re-reads it where that is needed (a file); resolves true when it changed. */
  refresh(): Promise<boolean>;
  /** Applies `change` to the latest document and writes the result; resolves with what was written. */
  update(change: (doc: T) => T): Promise<T>;
  /** Calls `listener` with every new document, whoever wrote it; returns an unsubscribe function. */
  subscribe(listener: (doc: T) => void): () => void;
  close(): void;
}
