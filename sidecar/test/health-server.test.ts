import { expect } from 'chai';
import { createServer, request, type Server } from 'node:http';
import { parseAppProbes, parseSidecarConfig, startHealthServer } from './helpers/harness';

function get(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('Health port for kubelet probes', () => {
  let app: Server;
  let appPort: number;
  let health: Awaited<ReturnType<typeof startHealthServer>>;
  let ready = false;
  const seen: Array<{ path: string; header?: string }> = [];

  before(async () => {
    app = createServer((req, res) => {
      seen.push({ path: req.url ?? '', header: req.headers['x-probe'] as string | undefined });
      res.writeHead(req.url === '/healthz' ? 200 : 500);
      res.end();
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
    appPort = (app.address() as { port: number }).port;
    const { probes, problems } = parseAppProbes(
      JSON.stringify({
        '/app-health/web/livez': { port: appPort, path: '/healthz', scheme: 'HTTP', httpHeaders: [{ name: 'x-probe', value: 'live' }] },
        '/app-health/web/readyz': { port: appPort, path: '/broken', scheme: 'HTTP' },
      }),
      'test',
    );
    expect(problems).to.deep.equal([]);
    health = await startHealthServer('127.0.0.1', 0, { readiness: () => ({ ready, reason: ready ? 'ready' : 'no SVID yet' }), probes });
  });

  after(async () => {
    health.server.close();
    app.close();
  });

  it('Should forward an app probe to the original path with its headers and return its status', async () => {
    expect(await get(health.port, '/app-health/web/livez')).to.equal(200);
    expect(seen.at(-1)).to.deep.equal({ path: '/healthz', header: 'live' });
    expect(await get(health.port, '/app-health/web/readyz')).to.equal(500);
  });

  it('Should answer 404 for a probe it was not told about, and never proxy anything else', async () => {
    expect(await get(health.port, '/app-health/other/livez')).to.equal(404);
    expect(await get(health.port, '/healthz')).to.equal(404);
  });

  it('Should report the sidecar readiness on /ready', async () => {
    expect(await get(health.port, '/ready')).to.equal(503);
    ready = true;
    expect(await get(health.port, '/ready')).to.equal(200);
  });

  it('Should refuse malformed TRELLIS_APP_PROBES with a BAD_CONFIG naming the variable', () => {
    let err: { code?: string; details?: { problems: string[] } } | undefined;
    try {
      parseSidecarConfig({
        flags: { 'control-plane': ['cp:1'], 'ca-bundle': 'a', 'token-file': 'b', namespace: 'n', service: 's' },
        env: { TRELLIS_APP_PROBES: '{"/x": {"port": "eighty"}}', TRELLIS_HEALTH_LISTEN: '0.0.0.0:15021' },
      });
    } catch (e) {
      err = e as typeof err;
    }
    expect(err?.code).to.equal('TRELLIS_SIDECAR_BAD_CONFIG');
    expect(err?.details?.problems.join('\n')).to.contain('$TRELLIS_APP_PROBES');
  });
});
