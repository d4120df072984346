/**
 * The service graph as SVG: identities on a circle, one arrow per
 * caller → callee with its allowed and refused counts; an edge with
 * refusals is drawn red, and its reasons show on hover (title) and, on
 * click, in the panel beside the graph.
 */
import type { GraphEdge, ServiceGraph } from '@trellis/control-plane';
import { fill, h, s, shortId } from './dom';

const W = 560;
const H = 380;
const R = 22;

/** The key of an edge, for keeping the selection across updates. */
export function edgeKey(e: Pick<GraphEdge, 'from' | 'to'>): string {
  return `${e.from} → ${e.to}`;
}

/** Draws the graph; `selected` is the key of the clicked edge; `onSelect` is called with a new one. */
export function renderGraph(g: ServiceGraph, selected: string | null, onSelect: (key: string | null) => void): void {
  const nodes = [...g.nodes];
  for (const e of g.edges) for (const n of [e.from, e.to]) if (!nodes.includes(n)) nodes.push(n);
  const radius = Math.min(W, H) / 2 - 60;
  const pos = new Map(nodes.map((n, i) => {
    const a = (2 * Math.PI * i) / Math.max(1, nodes.length) - Math.PI / 2;
    return [n, { x: W / 2 + radius * Math.cos(a), y: H / 2 + radius * Math.sin(a) }];
  }));
  const defs = s('defs', {}, ...['ok', 'refused'].map((k) => s('marker', { id: `arrow-${k}`, viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, s('path', { d: 'M0,0 L10,5 L0,10 z', class: `arrowhead ${k}` }))));
  const edges = g.edges.filter((e) => e.from !== e.to).map((e) => {
    const a = pos.get(e.from)!;
    const b = pos.get(e.to)!;
    const dx = b.x - a.x;
    const dy = b.y - a.y;
    const len = Math.hypot(dx, dy) || 1;
    // Bend each direction to its own side, so a → b and b → a do not overlap.
    const nx = -dy / len;
    const ny = dx / len;
    const mx = (a.x + b.x) / 2 + nx * 18;
    const my = (a.y + b.y) / 2 + ny * 18;
    const x1 = a.x + (dx / len) * R;
    const y1 = a.y + (dy / len) * R;
    const x2 = b.x - (dx / len) * (R + 2);
    const y2 = b.y - (dy / len) * (R + 2);
    const refused = e.refused > 0;
    const key = edgeKey(e);
    const reasons = e.reasons.map((r) => `${r.reason} ×${r.count} (${r.by === 'inbound' ? 'callee' : 'caller'})${r.detail ? ': ' + r.detail : ''}`).join('\n');
    const group = s(
      'g',
      { class: `edge${refused ? ' refused' : ''}${key === selected ? ' selected' : ''}`, 'data-from': e.from, 'data-to': e.to, 'data-allowed': e.allowed, 'data-refused': e.refused, tabindex: 0 },
      s('title', {}, `${shortId(e.from)} → ${shortId(e.to)}: ${e.allowed} allowed, ${e.refused} refused${reasons ? '\n' + reasons : ''}`),
      // A wide transparent twin of the line: something a pointer can hit.
      s('path', { d: `M${x1},${y1} Q${mx},${my} ${x2},${y2}`, class: 'edge-hit' }),
      s('path', { d: `M${x1},${y1} Q${mx},${my} ${x2},${y2}`, class: 'edge-line', 'marker-end': `url(#arrow-${refused ? 'refused' : 'ok'})`, 'stroke-width': Math.min(6, 1.5 + Math.log10(1 + e.allowed + e.refused)) }),
      // On the curve, halfway (a quadratic Bézier's midpoint), just beside it.
      s('text', { x: 0.25 * x1 + 0.5 * mx + 0.25 * x2 + nx * 10, y: 0.25 * y1 + 0.5 * my + 0.25 * y2 + ny * 10 + 4, class: 'edge-label' }, `${e.allowed}✓${refused ? ` ${e.refused}✗` : ''}`),
    );
    group.addEventListener('click', () => onSelect(key === selected ? null : key));
    group.addEventListener('keydown', (ev) => {
      if ((ev as KeyboardEvent).key === 'Enter') onSelect(key === selected ? null : key);
    });
    return group;
  });
  const circles = nodes.map((n) => {
    const p = pos.get(n)!;
    return s('g', { class: `node${n === '' || n === '*' ? ' anonymous' : ''}`, 'data-id': n }, s('title', {}, n === '' ? 'callers whose identity was not proven (plaintext, no or untrusted certificate)' : n), s('circle', { cx: p.x, cy: p.y, r: R }), s('text', { x: p.x, y: p.y + R + 14, class: 'node-label' }, shortId(n)));
  });
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'service graph' }, defs, ...edges, ...circles);
  fill('graph', nodes.length === 0 ? h('p', { class: 'empty' }, 'No calls in the window yet.') : svg);
  const chosen = g.edges.find((e) => edgeKey(e) === selected);
  fill(
    'edge-detail',
    chosen
      ? h(
          'div',
          {},
          h('h3', {}, `${shortId(chosen.from)} → ${shortId(chosen.to)}`),
          h('p', { class: 'muted id' }, `${chosen.from || '(unauthenticated)'} → ${chosen.to}`),
          h('p', {}, `${chosen.allowed} allowed, ${chosen.refused} refused in the last ${Math.round(g.windowSeconds / 60)} min`),
          chosen.reasons.length ? h('ul', { class: 'reasons' }, ...chosen.reasons.map((r) => h('li', { 'data-reason': r.reason }, h('b', {}, r.reason), ` ×${r.count}, refused by the ${r.by === 'inbound' ? 'callee' : 'caller'}`, r.detail ? h('div', { class: 'detail' }, r.detail) : null))) : h('p', { class: 'ok' }, 'Nothing refused.'),
        )
      : h('p', { class: 'muted' }, 'Click an edge for its refusal reasons.'),
  );
}
