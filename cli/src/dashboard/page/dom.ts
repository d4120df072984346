/**
 * Small DOM helpers for the dashboard page. Everything shown is set as text
 * or attribute values, never parsed as HTML: policy errors, report details
 * and SPIFFE IDs come from the mesh and may carry anything.
 */

type Child = Node | string | number | null | undefined | false;

/** Creates an HTML element with attributes (`class`, `data-*`, `title`, ...) and children. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string | number | undefined> = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) el.setAttribute(k, String(v));
  append(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** Creates an SVG element. */
export function s(tag: string, attrs: Record<string, string | number | undefined> = {}, ...children: Child[]): SVGElement {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) el.setAttribute(k, String(v));
  append(el, children);
  return el;
}

function append(el: Element, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
}

/** Replaces the children of the element with id `id`. */
export function fill(id: string, ...children: Child[]): void {
  const el = document.getElementById(id);
  if (!el) return;
  el.replaceChildren();
  append(el, children);
}

/** `1h02m`, `4m05s`, `12s`; `expired` at or below zero. */
export function countdown(ms: number): string {
  if (ms <= 0) return 'expired';
  const t = Math.floor(ms / 1000);
  const d = Math.floor(t / 86400);
  const hh = Math.floor((t % 86400) / 3600);
  const mm = Math.floor((t % 3600) / 60);
  const ss = t % 60;
  if (d > 0) return `${d}d${String(hh).padStart(2, '0')}h`;
  if (hh > 0) return `${hh}h${String(mm).padStart(2, '0')}m`;
  if (mm > 0) return `${mm}m${String(ss).padStart(2, '0')}s`;
  return `${ss}s`;
}

/** HH:MM:SS of an ISO time, local. */
export function clock(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleTimeString([], { hour12: false });
}

/** The last path segment of a SPIFFE ID (`payments` for …/sa/payments); '' → `unauthenticated`, `*` → `other peers`. */
export function shortId(id: string): string {
  if (id === '') return 'unauthenticated';
  if (id === '*') return 'other peers';
  const parts = id.split('/');
  return parts[parts.length - 1] || id;
}
