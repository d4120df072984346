/**
 * The sidecar's own Prometheus registry against prom-client (which it
 * replaced): the same operations render the same text, byte for byte, and
 * the process metrics keep prom-client's names, HELP and TYPE lines.
 */
import { expect } from 'chai';
import * as prom from 'prom-client';
import { Counter, Gauge, Histogram, MetricRegistry } from '../../src/metrics/metric-registry';
import { SidecarMetrics } from '../../src/metrics/sidecar-metrics';

/** HELP and TYPE lines only (sample values of process metrics differ between two scrapes). */
const headers = (text: string): string[] => text.split('\n').filter((l) => l.startsWith('# '));

describe('MetricRegistry (Prometheus text without prom-client)', () => {
  it('renders counters, gauges and histograms with labels exactly as prom-client does', async () => {
    const ours = new MetricRegistry();
    const theirs = new prom.Registry();
    const c1 = new Counter({ name: 'trellis_connections_total', help: 'Connections accepted, by direction', labelNames: ['direction'], registry: ours });
    const c2 = new prom.Counter({ name: 'trellis_connections_total', help: 'Connections accepted, by direction', labelNames: ['direction'], registers: [theirs] });
    const e1 = new Counter({ name: 'trellis_empty_total', help: 'never \\ touched\nat all', labelNames: ['reason'], registry: ours });
    const e2 = new prom.Counter({ name: 'trellis_empty_total', help: 'never \\ touched\nat all', labelNames: ['reason'], registers: [theirs] });
    const g1 = new Gauge({ name: 'trellis_connections_active', help: 'Connections open now', labelNames: ['direction'], registry: ours });
    const g2 = new prom.Gauge({ name: 'trellis_connections_active', help: 'Connections open now', labelNames: ['direction'], registers: [theirs] });
    const u1 = new Gauge({ name: 'trellis_unset', help: 'An unlabelled gauge never set', registry: ours });
    const u2 = new prom.Gauge({ name: 'trellis_unset', help: 'An unlabelled gauge never set', registers: [theirs] });
    const v1 = new Gauge({ name: 'trellis_values', help: 'Odd values', labelNames: ['k'], registry: ours });
    const v2 = new prom.Gauge({ name: 'trellis_values', help: 'Odd values', labelNames: ['k'], registers: [theirs] });
    const h1 = new Histogram({ name: 'trellis_gc_seconds', help: 'GC', labelNames: ['kind'], buckets: [0.001, 0.01, 1], registry: ours });
    const h2 = new prom.Histogram({ name: 'trellis_gc_seconds', help: 'GC', labelNames: ['kind'], buckets: [0.001, 0.01, 1], registers: [theirs] });
    void e1;
    void e2;
    void u1;
    void u2;
    for (const [c, g, v, h] of [
      [c1, g1, v1, h1],
      [c2, g2, v2, h2],
    ] as const) {
      c.inc({ direction: 'inbound' });
      c.inc({ direction: 'outbound' }, 41);
      c.inc({ direction: 'inbound' }, 2.5);
      g.inc({ direction: 'inbound' }, 3);
      g.inc({ direction: 'inbound' }, -1);
      g.dec({ direction: 'outbound' });
      v.set({ k: 'quote " back \\ nl \n' }, 1e21);
      v.set({ k: 'small' }, -0.000001);
      v.set({ k: 'nan' }, NaN);
      v.set({ k: 'inf' }, Infinity);
      h.observe({ kind: 'major' }, 0.005);
      h.observe({ kind: 'major' }, 7);
      h.observe({ kind: 'minor' }, 0.0001);
    }
    expect(await ours.metrics()).to.equal(await theirs.metrics());
    expect(ours.contentType).to.equal(theirs.contentType);
    expect((await c1.get()).values).to.deep.equal((await c2.get()).values.map(({ labels, value }) => ({ labels, value })));
  });

  it('runs collect hooks bound to their metric before each scrape', async () => {
    const r = new MetricRegistry();
    let n = 0;
    new Gauge({
      name: 'trellis_n',
      help: 'n',
      registry: r,
      collect() {
        this.set(++n);
      },
    });
    expect(await r.metrics()).to.include('trellis_n 1\n');
    expect(await r.metrics()).to.include('trellis_n 2\n');
  });

  it('refuses a negative counter increment, an unknown label and a duplicate name', () => {
    const r = new MetricRegistry();
    const c = new Counter({ name: 'trellis_c_total', help: 'c', labelNames: ['a'], registry: r });
    expect(() => c.inc({ a: 'x' }, -1)).to.throw(/cannot be increased by -1/);
    expect(() => c.inc({ b: 'x' } as never)).to.throw(/unknown label b/);
    expect(() => new Counter({ name: 'trellis_c_total', help: 'again', registry: r })).to.throw(/already registered/);
  });

  it('exports the sidecar metrics and prom-client\'s default process metrics under the same names, HELP and TYPE lines', async () => {
    const m = new SidecarMetrics({ certExpirySeconds: () => 3600, ready: () => true, controlPlaneConnected: () => false });
    const theirs = new prom.Registry();
    prom.collectDefaultMetrics({ register: theirs, prefix: 'trellis_process_' });
    global.gc?.();
    const ours = headers(await m.registry.metrics()).filter((l) => l.includes('trellis_process_'));
    expect(ours).to.deep.equal(headers(await theirs.metrics()));
    const text = await m.registry.metrics();
    expect(text).to.match(/^trellis_process_process_resident_memory_bytes [1-9]\d+$/m);
    expect(text).to.match(/^trellis_process_nodejs_heap_space_size_used_bytes\{space="old"\} [1-9]\d+$/m);
    expect(text).to.match(/^trellis_process_nodejs_version_info\{version="v\d+\.\d+\.\d+",major="\d+",minor="\d+",patch="\d+"\} 1$/m);
    expect(text).to.match(/^trellis_ready 1$/m);
    expect(text).to.match(/^trellis_control_plane_connected 0$/m);
    expect(text).to.match(/^trellis_certificate_expiry_seconds 3600$/m);
  });
});
