/**
 * What the dashboard server pushes to the page over its WebSocket (JSON
 * text frames). The page sends nothing: the dashboard only reads.
 * - `hello`: the current mesh, the recent events and the control-plane link,
 *   first on every connection;
 * - `mesh`: the sections of the mesh view that changed since the last
 *   message (a section is sent whole), with the view's time;
 * - `events`: audit events that arrived, oldest first;
 * - `link`: the dashboard lost or regained the control plane's admin API.
 */
import type { AuditEvent, MeshView } from '@trellis/control-plane';

/** The mesh view without its time: what a `mesh` message carries parts of. */
export type MeshSections = Partial<Omit<MeshView, 'generatedAt'>>;

/** Whether the dashboard reaches the control plane. */
export interface ControlPlaneLink {
  readonly connected: boolean;
  /** The admin address. */
  readonly admin: string;
  /** Why not, when not. */
  readonly error: string | null;
}

/** A message from the server. */
export type ServerMessage =
  | { readonly type: 'hello'; readonly mesh: MeshView | null; readonly events: readonly AuditEvent[]; readonly link: ControlPlaneLink }
  | { readonly type: 'mesh'; readonly generatedAt: string; readonly sections: MeshSections }
  | { readonly type: 'events'; readonly events: readonly AuditEvent[] }
  | { readonly type: 'link'; readonly link: ControlPlaneLink };

/**
 * The sections of `next` that differ from `prev` (all of them when there is
 * no `prev`), compared as JSON; `generatedAt` alone is no change. Pure.
 */
export function changedSections(prev: MeshView | null, next: MeshView): MeshSections | null {
  const out: Record<string, unknown> = {};
  let any = false;
  for (const key of Object.keys(next) as Array<keyof MeshView>) {
    if (key === 'generatedAt') continue;
    if (prev && JSON.stringify(prev[key]) === JSON.stringify(next[key])) continue;
    out[key] = next[key];
    any = true;
  }
  return any ? (out as MeshSections) : null;
}
