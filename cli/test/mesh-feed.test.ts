/**
 * The dashboard's link to the control plane, with the admin client replaced
 * by a scripted one: it greets a page with what it has, sends only the
 * sections that changed, forwards events, reports a lost link, and on stop
 * abandons the requests in flight (a long poll would otherwise hold the
 * process for its whole wait).
 */
import { expect } from 'chai';
import { silentLogger } from '@trellis/shared';
import type { AdminTarget, AuditEventPage, MeshView } from '@trellis/control-plane';
import { MeshFeed } from '../src/dashboard/mesh-feed';
import type { ServerMessage } from '../src/dashboard/dashboard-messages';

const admin = { address: '127.0.0.1:15014' } as unknown as AdminTarget;
const view = (spiffeIds: string[], at: string): MeshView => ({ generatedAt: at, trustDomain: 't', workloads: spiffeIds.map((spiffeId) => ({ spiffeId }) as MeshView['workloads'][number]), graph: { nodes: [], edges: [], windowSeconds: 0 }, policies: { servable: true, version: 'v', problems: [] }, ca: { error: 'x' }, revocations: { serials: [], spiffeIds: [] }, latestEvent: 0 });

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  expect(cond()).to.equal(true);
}

describe('dashboard mesh feed', () => {
  it('Should send what changed and the events as they come, report a lost link, and abandon its requests on stop', async () => {
    const meshes: Array<MeshView | Error> = [view(['a'], '1'), view(['a'], '2'), view(['a', 'b'], '3'), new Error('connection refused')];
    const signals: AbortSignal[] = [];
    let eventsServed = false;
    const request = ((_t: AdminTarget, _m: string, path: string, _b?: unknown, _ms?: number, signal?: AbortSignal): Promise<unknown> => {
      signals.push(signal!);
      if (path === '/debug/mesh') {
        const next = meshes.length > 1 ? meshes.shift()! : meshes[0]!;
        return next instanceof Error ? Promise.reject(next) : Promise.resolve(next);
      }
      if (!eventsServed) {
        eventsServed = true;
        const page: AuditEventPage = { events: [{ seq: 1, time: '1', kind: 'revocation', action: 'revocation.added', spiffeId: 'a', fields: {} }], next: 1, oldest: 1 };
        return Promise.resolve(page);
      }
      // A long poll: it ends only when abandoned.
      return new Promise((_resolve, reject) => signal!.addEventListener('abort', () => reject(new Error('abandoned'))));
    }) as unknown as typeof import('@trellis/control-plane').adminRequest;
    const feed = new MeshFeed({ admin, logger: silentLogger, request, intervalMs: 1 });
    const got: ServerMessage[] = [];
    feed.subscribe((m) => got.push(m));
    feed.start();
    await until(() => got.some((m) => m.type === 'link' && !m.link.connected));
    const meshMessages = got.filter((m) => m.type === 'mesh') as Array<Extract<ServerMessage, { type: 'mesh' }>>;
    // The first view whole, then only the workloads that changed (the second answer changed nothing but its time).
    expect(meshMessages.map((m) => Object.keys(m.sections).sort().join())).to.deep.equal(['ca,graph,latestEvent,policies,revocations,trustDomain,workloads', 'workloads']);
    expect(got.filter((m) => m.type === 'events').map((m) => (m as Extract<ServerMessage, { type: 'events' }>).events[0]!.action)).to.deep.equal(['revocation.added']);
    const hello = feed.hello() as Extract<ServerMessage, { type: 'hello' }>;
    expect(hello.mesh!.workloads.map((w) => w.spiffeId)).to.deep.equal(['a', 'b']);
    expect(hello.events).to.have.length(1);
    expect(hello.link).to.deep.include({ connected: false, error: 'connection refused' });
    feed.stop();
    expect(signals.every((s) => s.aborted)).to.equal(true);
  });

  it('Should poll only while a page is open', async () => {
    let requests = 0;
    const request = ((_t: AdminTarget, _m: string, path: string, _b?: unknown, _ms?: number, signal?: AbortSignal): Promise<unknown> => {
      requests++;
      if (path === '/debug/mesh') return Promise.resolve(view(['a'], String(requests)));
      return new Promise((_resolve, reject) => signal!.addEventListener('abort', () => reject(new Error('abandoned'))));
    }) as unknown as typeof import('@trellis/control-plane').adminRequest;
    const feed = new MeshFeed({ admin, logger: silentLogger, request, intervalMs: 1 });
    feed.start();
    await new Promise((r) => setTimeout(r, 30));
    expect(requests).to.equal(0);
    const unsubscribe = feed.subscribe(() => undefined);
    await until(() => requests > 3);
    unsubscribe();
    await new Promise((r) => setTimeout(r, 10));
    const paused = requests;
    await new Promise((r) => setTimeout(r, 30));
    expect(requests).to.equal(paused);
    feed.subscribe(() => undefined);
    await until(() => requests > paused + 2);
    feed.stop();
  });
});
