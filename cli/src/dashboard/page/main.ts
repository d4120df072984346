/**
 * The dashboard page: one WebSocket to the dashboard server (same origin; the
 * cookie the first load set carries the token), the mesh as the control
 * plane last described it, and a redraw of each section when its part of
 * the view changes. Countdowns tick on the page's clock, corrected by the
 * server's, four times a second. It sends nothing: the dashboard only reads.
 */
import type { AuditEvent, MeshView } from '@trellis/control-plane';
import type { ControlPlaneLink, ServerMessage } from '../dashboard-messages';
import { fill, h } from './dom';
import { renderGraph } from './graph';
import { appendFeed, renderCa, renderPolicies } from './panels';
import { renderWorkloads, tickCertificates } from './workloads';

let mesh: MeshView | null = null;
let skewMs = 0;
let selectedEdge: string | null = null;

function layout(): void {
  document.body.replaceChildren(
    h('header', {}, h('h1', {}, 'Trellis mesh'), h('span', { id: 'trust-domain', class: 'muted' }), h('span', { id: 'link', class: 'link muted' }, 'connecting…')),
    h('main', {},
      h('section', { class: 'wide' }, h('h2', {}, 'Workloads'), h('div', { id: 'workloads' })),
      h('section', {}, h('h2', {}, 'Service graph'), h('div', { class: 'graph-wrap' }, h('div', { id: 'graph' }), h('aside', { id: 'edge-detail' }))),
      h('section', {}, h('h2', {}, 'Audit feed'), h('ol', { id: 'feed' }, h('li', { class: 'empty muted' }, 'No event yet.'))),
      h('section', {}, h('h2', {}, 'Certificate authority'), h('div', { id: 'ca' }), h('h3', {}, 'Revocations in force'), h('div', { id: 'revocations' })),
      h('section', {}, h('h2', {}, 'Policy problems'), h('div', { id: 'policies' })),
    ),
  );
}

function showLink(link: ControlPlaneLink | null, socketOpen: boolean): void {
  const el = document.getElementById('link');
  if (!el) return;
  const live = socketOpen && link?.connected === true;
  el.className = `link ${live ? 'ok' : 'bad'}`;
  el.textContent = !socketOpen ? 'dashboard disconnected — reconnecting' : link?.connected ? `live · ${link.admin}` : `control plane unreachable: ${link?.error ?? ''}`;
  document.body.dataset['live'] = String(live);
}

function redraw(changed: ReadonlySet<string>): void {
  if (!mesh) return;
  if (changed.has('trustDomain')) fill('trust-domain', mesh.trustDomain);
  if (changed.has('workloads')) renderWorkloads(mesh.workloads);
  if (changed.has('graph')) drawGraph();
  if (changed.has('ca') || changed.has('revocations')) renderCa(mesh.ca, mesh.revocations);
  if (changed.has('policies')) renderPolicies(mesh.policies);
  tickCertificates(Date.now() + skewMs);
}

function drawGraph(): void {
  if (!mesh) return;
  renderGraph(mesh.graph, selectedEdge, (key) => {
    selectedEdge = key;
    drawGraph();
  });
}

function onMessage(m: ServerMessage, link: { value: ControlPlaneLink | null }): void {
  switch (m.type) {
    case 'hello': {
      link.value = m.link;
      const feed = document.getElementById('feed');
      feed?.replaceChildren(h('li', { class: 'empty muted' }, 'No event yet.'));
      if (m.events.length) appendFeed(m.events as AuditEvent[]);
      if (m.mesh) {
        mesh = m.mesh;
        skewMs = Date.parse(m.mesh.generatedAt) - Date.now();
        redraw(new Set(Object.keys(m.mesh)));
      }
      break;
    }
    case 'mesh': {
      const next = { ...(mesh ?? {}), ...m.sections, generatedAt: m.generatedAt } as MeshView;
      mesh = next;
      skewMs = Date.parse(m.generatedAt) - Date.now();
      redraw(new Set(Object.keys(m.sections)));
      break;
    }
    case 'events':
      appendFeed(m.events as AuditEvent[]);
      break;
    case 'link':
      link.value = m.link;
      break;
  }
}

function connect(attempt = 0): void {
  const link: { value: ControlPlaneLink | null } = { value: null };
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`);
  ws.onopen = () => {
    attempt = 0;
    showLink(link.value, true);
  };
  ws.onmessage = (ev) => {
    try {
      onMessage(JSON.parse(String(ev.data)) as ServerMessage, link);
    } catch (err) {
      console.error('dashboard message not understood', err);
    }
    showLink(link.value, true);
  };
  ws.onclose = () => {
    showLink(link.value, false);
    setTimeout(() => connect(attempt + 1), Math.min(5000, 250 * 2 ** attempt));
  };
}

layout();
connect();
setInterval(() => tickCertificates(Date.now() + skewMs), 250);
