/** The workloads table: identity, labels, data path, readiness, certificate countdown against its lifetime, rotations, sync per type. */
import type { WorkloadView } from '@trellis/control-plane';
import { clock, countdown, fill, h } from './dom';

/** Draws the table; the countdown cells are filled by {@link tickCertificates}. */
export function renderWorkloads(workloads: readonly WorkloadView[]): void {
  if (workloads.length === 0) return fill('workloads', h('p', { class: 'empty' }, 'No sidecar is connected to this control plane.'));
  const head = h('tr', {}, ...['SPIFFE ID', 'namespace', 'labels', 'data path', 'ready', 'certificate', 'expires', 'rotations', 'sync'].map((t) => h('th', {}, t)));
  const rows = workloads.map((w) => {
    const c = w.certificate;
    const labels = Object.entries(w.labels).map(([k, v]) => h('span', { class: 'chip' }, `${k}=${v}`));
    const ready = w.ready === null ? h('span', { class: 'muted' }, '?') : h('span', { class: w.ready ? 'ok' : 'bad', title: w.readyReason ?? '' }, w.ready ? 'ready' : 'NOT READY');
    const bar = c?.notAfter
      ? h(
          'div',
          { class: 'life', 'data-not-before': c.notBefore ?? '', 'data-not-after': c.notAfter, 'data-renew-at': c.renewAt ?? '' },
          h('div', { class: 'life-used' }),
          c.renewAt && c.notBefore ? h('div', { class: 'life-renew', title: `renews at ${clock(c.renewAt)}` }) : null,
        )
      : null;
    const rotations = h('ol', { class: 'rotations' }, ...w.rotations.slice(0, 4).map((r, i) => h('li', { class: i === 0 ? 'current' : '', title: `valid ${clock(r.notBefore)}–${clock(r.notAfter)}` }, `${clock(r.installedAt)} ${r.serial.slice(0, 8)}`)));
    const sync = Object.entries(w.sync)
      .filter(([, v]) => v.state !== 'NOT_SENT')
      .map(([type, v]) =>
        h('span', { class: `sync ${v.state === 'NACKED' ? 'bad' : v.state === 'SYNCED' ? 'ok' : 'muted'}`, 'data-type': type, 'data-state': v.state, title: v.state === 'NACKED' ? `NACKED ${v.rejectedVersion ?? ''}: ${v.error ?? ''}` : `ACKED ${v.ackedVersion ?? '-'}` }, `${type} ${v.state === 'NACKED' ? '✗ ' + (v.error ?? '') : (v.ackedVersion ?? '-').slice(0, 6)}`),
      );
    return h(
      'tr',
      { 'data-spiffe-id': w.spiffeId ?? '' },
      h('td', { class: 'id', title: `${w.authMethod ?? ''} · ${w.address ?? ''}${w.pod ? ' · pod ' + w.pod : ''}` }, w.spiffeId ?? '(not authenticated)'),
      h('td', {}, w.namespace ?? ''),
      h('td', {}, ...labels),
      h('td', {}, w.dataPath ?? '?'),
      h('td', {}, ready),
      h('td', { class: 'mono', 'data-field': 'serial' }, c?.serial ?? '-'),
      h('td', {}, h('span', { class: 'countdown', 'data-not-after': c?.notAfter ?? '' }, ''), bar),
      h('td', {}, rotations),
      h('td', { class: 'syncs' }, ...sync),
    );
  });
  fill('workloads', h('table', {}, h('thead', {}, head), h('tbody', {}, ...rows)));
}

/** Moves every countdown and lifetime bar to `now` (server time). */
export function tickCertificates(now: number): void {
  for (const el of document.querySelectorAll<HTMLElement>('.countdown[data-not-after]')) {
    const at = Date.parse(el.dataset['notAfter'] ?? '');
    el.textContent = Number.isNaN(at) ? '-' : countdown(at - now);
    el.classList.toggle('bad', !Number.isNaN(at) && at - now < 10_000);
  }
  for (const el of document.querySelectorAll<HTMLElement>('.life')) {
    const from = Date.parse(el.dataset['notBefore'] ?? '');
    const to = Date.parse(el.dataset['notAfter'] ?? '');
    const renew = Date.parse(el.dataset['renewAt'] ?? '');
    const used = el.querySelector<HTMLElement>('.life-used');
    const mark = el.querySelector<HTMLElement>('.life-renew');
    if (Number.isNaN(from) || Number.isNaN(to) || to <= from) {
      if (used) used.style.width = '0';
      continue;
    }
    const pct = (t: number): string => `${Math.min(100, Math.max(0, ((t - from) / (to - from)) * 100)).toFixed(1)}%`;
    if (used) used.style.width = pct(now);
    if (mark && !Number.isNaN(renew)) mark.style.left = pct(renew);
  }
}
