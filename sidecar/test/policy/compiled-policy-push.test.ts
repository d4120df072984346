/**
 * Compiled AuthorizationPolicies pushed over a real gRPC/TLS discovery
 * stream to the sidecar's own discovery client, wired into its state as
 * `trellis sidecar` wires them: a malformed push is NACKed with the field
 * and the code, and the last good set stays enforced (fail closed).
 */
import { expect } from 'chai';
import * as grpc from '@grpc/grpc-js';
import {
  AUTHORIZATION_POLICIES_TYPE_URL,
  AUTHZ_WIRE_VERSION,
  buildPolicySet,
  encodeAuthorizationPolicies,
  encodeResource,
  policiesFromJSON,
  silentLogger,
  type AuthorizationPolicy,
} from '@trellis/shared';
import { TestCa } from '@trellis/testkit';
import { decide, DiscoveryClient, SidecarState, sharedAuthorizer, wireDiscovery } from '../helpers/harness';
import { discoveryServiceDefinition } from '../helpers/discovery-service';

const TD = 'example.org';
const CP_ID = `spiffe://${TD}/ns/trellis-system/sa/trellis-control-plane`;
const WEB = `spiffe://${TD}/ns/shop/sa/web`;
const OTHER = `spiffe://${TD}/ns/shop/sa/other`;
type ServerCall = grpc.ServerDuplexStream<Record<string, unknown>, unknown>;

function compiled(manifests: unknown[]): unknown[] {
  const set = buildPolicySet(policiesFromJSON(manifests, 'test'));
  return JSON.parse(JSON.stringify(encodeAuthorizationPolicies(set.authorizationPolicies as AuthorizationPolicy[]))) as unknown[];
}

const allowWeb = (name: string, principal: string) => ({
  apiVersion: 'security.istio.io/v1',
  kind: 'AuthorizationPolicy',
  metadata: { name, namespace: 'shop', creationTimestamp: '2026-01-01T00:00:00Z' },
  spec: { action: 'ALLOW', rules: [{ from: [{ source: { principals: [principal] } }], to: [{ operation: { methods: ['GET'] } }] }] },
});

async function waitFor(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('Compiled policies pushed to a sidecar over a real discovery stream', function () {
  this.timeout(20_000);
  let server: grpc.Server;
  let client: DiscoveryClient;
  let call: ServerCall | undefined;
  const requests: Array<Record<string, unknown>> = [];
  const state = new SidecarState();
  const authorizer = sharedAuthorizer({ trustDomain: () => TD });
  const workload = { namespace: 'shop', labels: {} };
  const verdict = (principal: string, method = 'GET'): string => decide(authorizer, state.current().authz?.policies ?? [], workload, { principal, port: 8080, http: { method, path: '/' } }).decision;
  let nonce = 0;
  const push = async (body: unknown): Promise<Record<string, unknown>> => {
    const n = `n${++nonce}`;
    call!.write({ type_url: AUTHORIZATION_POLICIES_TYPE_URL, version_info: `v${nonce}`, nonce: n, resources: [{ name: 'default', body: encodeResource(body) }] });
    await waitFor(() => requests.some((r) => r['response_nonce'] === n), `the answer to ${n}`);
    return requests.find((r) => r['response_nonce'] === n)!;
  };

  before(async () => {
    const ca = await TestCa.create(TD);
    const leaf = await ca.issueLeaf(CP_ID);
    server = new grpc.Server();
    server.addService(discoveryServiceDefinition(), {
      StreamResources: (c: ServerCall) => {
        call = c;
        c.on('data', (r: Record<string, unknown>) => requests.push(r));
        c.on('error', () => undefined);
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(leaf.chainPem), private_key: Buffer.from(leaf.key.keyPem) }], false), (e, p) => (e ? reject(e) : resolve(p))),
    );
    client = new DiscoveryClient({
      addresses: [`127.0.0.1:${port}`],
      bootstrapBundlePem: ca.root.pem,
      getToken: async () => 'token',
      node: { spiffeId: `spiffe://${TD}/ns/shop/sa/cart`, namespace: 'shop', labels: {}, service: 'cart', inboundPorts: [8080] },
      controlPlaneSpiffeId: CP_ID,
      logger: silentLogger,
      backoff: { initialMs: 20, maxMs: 100 },
    });
    wireDiscovery(client, state, { logger: silentLogger });
    client.start();
    await waitFor(() => call !== undefined && requests.some((r) => r['type_url'] === AUTHORIZATION_POLICIES_TYPE_URL), 'the subscription');
  });

  after(() => {
    client.stop();
    server.forceShutdown();
  });

  it('Should ACK a compiled set and enforce it', async () => {
    const ack = await push({ wireVersion: AUTHZ_WIRE_VERSION, policies: compiled([allowWeb('cart-from-web', `${TD}/ns/shop/sa/web`)]) });
    expect(ack['error_detail']).to.equal(null);
    expect(verdict(WEB)).to.equal('ALLOW');
    expect(verdict(OTHER)).to.equal('DENY');
    expect(verdict(WEB, 'DELETE')).to.equal('DENY');
  });

  it('Should NACK a malformed compiled policy naming its field and code, and keep enforcing the previous set', async () => {
    const good = state.current().authz;
    const bad = compiled([allowWeb('cart-from-anyone', '*')]) as Array<Record<string, any>>;
    // A principal sent as a bare string instead of a typed pattern.
    bad[0]!.rules[0].from[0].principals[0] = '*';
    const nack = await push({ wireVersion: AUTHZ_WIRE_VERSION, policies: bad });
    const message = (nack['error_detail'] as { message: string }).message;
    expect(message).to.contain('policies[0].rules[0].from[0].principals[0]').and.contain('[TRELLIS_POLICY_WIRE_FIELD]');
    expect(nack['version_info'], 'the NACK names the version still in force').to.equal('v1');
    expect(state.current().authz).to.equal(good);
    expect(verdict(OTHER), 'the set that would have allowed anyone is not in force').to.equal('DENY');
    expect(verdict(WEB)).to.equal('ALLOW');
  });

  it('Should NACK manifests from a control plane that predates the compiled form, keeping the previous set', async () => {
    const good = state.current().authz;
    const nack = await push({ policies: [allowWeb('cart-from-anyone', '*')] });
    expect((nack['error_detail'] as { message: string }).message).to.contain('[TRELLIS_POLICY_WIRE_VERSION]');
    expect(state.current().authz).to.equal(good);
    expect(verdict(OTHER)).to.equal('DENY');
  });
});
