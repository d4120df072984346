/** The CA, revocations, policy problems and audit feed panels. */
import type { AuditEvent, MeshView } from '@trellis/control-plane';
import { clock, fill, h } from './dom';

/** Roots and intermediate with their expiry, the next intermediate, a root rotation's phase and the gate it waits on. */
export function renderCa(ca: MeshView['ca'], revocations: MeshView['revocations']): void {
  if ('error' in ca) {
    fill('ca', h('p', { class: 'bad' }, `CA status unavailable: ${ca.error}`));
  } else {
    const rot = ca.rootRotation;
    fill(
      'ca',
      h(
        'dl',
        {},
        h('dt', {}, 'trust domain'),
        h('dd', {}, ca.trustDomain),
        ...ca.roots.flatMap((r, i) => [h('dt', {}, `root ${i + 1}`), h('dd', {}, r.subject, ' — expires ', h('span', { class: 'countdown', 'data-not-after': r.notAfter }, ''))]),
        h('dt', {}, 'intermediate'),
        h('dd', {}, ca.intermediate.subject, ' — expires ', h('span', { class: 'countdown', 'data-not-after': ca.intermediate.notAfter }, '')),
        h('dt', {}, 'next intermediate'),
        h('dd', {}, ca.next.state, ca.next.notAfter ? ` (until ${ca.next.notAfter})` : ''),
        h('dt', {}, 'root rotation'),
        h('dd', { id: 'rotation' }, rot ? h('span', {}, h('b', {}, rot.phase), ` since ${clock(rot.phaseSince)}; next: ${rot.nextAction}; waiting for: `, h('b', {}, rot.waitingFor), rot.laggingProxies.length ? ` (${rot.laggingProxies.length} sidecars behind)` : '') : 'none running'),
      ),
    );
  }
  const items = [...revocations.spiffeIds.map((v) => ['SPIFFE ID', v]), ...revocations.serials.map((v) => ['serial', v])];
  fill('revocations', items.length === 0 ? h('p', { class: 'muted' }, 'No revocation in force.') : h('ul', {}, ...items.map(([k, v]) => h('li', { 'data-revoked': v }, h('span', { class: 'muted' }, `${k} `), h('span', { class: 'mono' }, v!)))));
}

/** Each rejected policy source with its problems, as `trellis validate` prints them. */
export function renderPolicies(p: MeshView['policies']): void {
  if (p.problems.length === 0) return fill('policies', h('p', { class: 'ok', id: 'policies-ok' }, p.servable === false ? 'No policy is served yet.' : 'Every policy validates.'));
  fill(
    'policies',
    h('ul', {}, ...p.problems.map((x) => h('li', { class: 'problem', 'data-source': x.source }, h('div', { class: 'mono' }, x.message), h('div', { class: 'muted' }, x.lastGoodKept ? `${x.source}: the last good version stays in force` : `${x.source}: not in force`)))),
  );
}

const SHOWN_FIELDS = ['serial', 'authMethod', 'reason', 'from', 'to', 'count', 'detail', 'value', 'target', 'phase', 'requester', 'code', 'error', 'notAfter'];

/** Prepends `events` to the feed (newest first), keeping at most `max` lines. */
export function appendFeed(events: readonly AuditEvent[], max = 300): void {
  const list = document.getElementById('feed');
  if (!list) return;
  list.querySelector('.empty')?.remove();
  for (const e of events) {
    const fields = SHOWN_FIELDS.filter((k) => e.fields[k] !== undefined && e.fields[k] !== null && e.fields[k] !== '').map((k) => `${k}=${String(e.fields[k])}`);
    list.prepend(h('li', { class: `event ${e.kind}`, 'data-kind': e.kind, 'data-action': e.action, 'data-seq': e.seq }, h('span', { class: 'time' }, clock(e.time)), h('span', { class: `badge ${e.kind}` }, e.kind), h('b', {}, e.action), e.spiffeId ? h('span', { class: 'id' }, e.spiffeId) : null, fields.length ? h('span', { class: 'muted' }, fields.join(' ')) : null));
  }
  while (list.children.length > max) list.lastElementChild?.remove();
}
