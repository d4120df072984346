/**
 * An informer: a local cache of one collection kept current by the official
 * client's ListWatch (list, then watch from the list's resourceVersion; on
 * 410 Gone it lists again and reports what disappeared meanwhile as deletes).
 * Two things are added around it, not a watch loop of our own:
 *
 * - watches ask for bookmarks (`allowWatchBookmarks=true`), so a quiet
 *   collection still advances the resourceVersion and a reconnect rarely
 *   needs a full relist;
 * - when the library gives up (a failed list, a refused watch, the API server
 *   down) the informer starts it again after a jittered exponential backoff
 *   (the shared backoff), resuming from the last resourceVersion it saw.
 */
import { backoffDelayMs, type BackoffOptions, type Logger } from '@trellis/shared';
import type { KubeClient } from '../client/kube-client';
import type { KubeList, KubeObject } from '../client/kube-object';

/** Options of an informer. */
export interface InformerOptions {
  labelSelector?: string;
  fieldSelector?: string;
  /** Restart backoff after the list or watch fails (default 500 ms doubling to 30 s). */
  backoff?: BackoffOptions;
  logger?: Logger;
  /** Random source for the jitter (tests). */
  random?: () => number;
}

/** What an informer reports. */
export type InformerEvent = 'add' | 'update' | 'delete';

/** A running informer. */
export interface ResourceInformer<T extends KubeObject> {
  /** Registers a handler; objects arrive as the API server sent them. */
  on(event: InformerEvent, handler: (obj: T) => void): void;
  /** Called with each failure before the informer restarts itself. */
  onError(handler: (err: unknown) => void): void;
  /** Resolves once the first list is in the cache. */
  synced(): Promise<void>;
  /** True once the first list is in the cache. */
  hasSynced(): boolean;
  /** The cached objects (of one namespace, or all). */
  list(namespace?: string): T[];
  get(name: string, namespace?: string): T | undefined;
  /** The last resourceVersion seen (list, event or bookmark). */
  resourceVersion(): string;
  /** How many times the collection was listed (the first list, then each relist after a 410). */
  listCount(): number;
  stop(): Promise<void>;
}

const DEFAULT_INFORMER_BACKOFF: BackoffOptions = Object.freeze({ initialMs: 500, maxMs: 30_000 });

/** Starts an informer on the collection at `path` (e.g. `/api/v1/pods`). */
export function startInformer<T extends KubeObject>(client: KubeClient, path: string, opts: InformerOptions = {}): ResourceInformer<T> {
  const lib = client.lib;
  const watch = new lib.Watch(client.config);
  const bookmarking = {
    watch: (p: string, query: Record<string, unknown>, cb: (phase: string, apiObj: unknown, watchObj?: unknown) => void, done: (err: unknown) => void) =>
      watch.watch(p, { ...query, allowWatchBookmarks: true }, cb, done),
  };
  let lists = 0;
  let attempt = 0;
  let synced = false;
  let stopped = false;
  let restartTimer: NodeJS.Timeout | undefined;
  let resolveSynced!: () => void;
  const syncedPromise = new Promise<void>((r) => (resolveSynced = r));
  const errorHandlers: Array<(err: unknown) => void> = [];

  const listFn = async (): Promise<KubeList<T>> => {
    const list = await client.request<KubeList<T>>('GET', path, { query: { labelSelector: opts.labelSelector, fieldSelector: opts.fieldSelector } });
    lists++;
    attempt = 0;
    // The ListWatch fills its cache right after this resolves; report synced after that.
    setImmediate(() => {
      if (!synced) {
        synced = true;
        resolveSynced();
      }
    });
    return list;
  };
  // The library types objects with its generated models (Date timestamps); ours stay as sent (strings).
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const lw = new lib.ListWatch<any>(
    path,
    bookmarking as unknown as InstanceType<typeof lib.Watch>,
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    listFn as unknown as () => Promise<any>,
    false,
    opts.labelSelector,
    opts.fieldSelector,
  );
  lw.on('error', (err: unknown) => {
    for (const h of errorHandlers) h(err);
    if (stopped) return;
    const delay = backoffDelayMs(attempt++, opts.backoff ?? DEFAULT_INFORMER_BACKOFF, (opts.random ?? Math.random)());
    opts.logger?.warn('informer restarting after an error', { path, delayMs: delay, error: err });
    restartTimer = setTimeout(() => {
      restartTimer = undefined;
      if (!stopped) void lw.start();
    }, delay);
    restartTimer.unref();
  });
  void lw.start();

  return {
    on(event, handler) {
      lw.on(event, (obj: T) => {
        attempt = 0;
        handler(obj);
      });
    },
    onError(handler) {
      errorHandlers.push(handler);
    },
    synced: () => syncedPromise,
    hasSynced: () => synced,
    list: (namespace) => [...lw.list(namespace)] as T[],
    get: (name, namespace) => lw.get(name, namespace) as T | undefined,
    resourceVersion: () => lw.latestResourceVersion(),
    listCount: () => lists,
    async stop() {
      stopped = true;
      if (restartTimer) clearTimeout(restartTimer);
      await lw.stop();
    },
  };
}
