import { expect } from 'chai';
import { SidecarState, classifyFirstBytes, handshakeErrorCode, verifyCode, resolveTarget, upstreamHeaders, downstreamHeaders, ambiguousRequestHeaders, verifyPeer, makeRevocations, type LeafFacts } from './helpers/harness';

describe('classifyFirstBytes (PERMISSIVE sniffing)', () => {
  const cases: Array<[string, number[], string]> = [
    ['a TLS 1.0-style ClientHello record header', [0x16, 0x03, 0x01, 0x02, 0x00], 'tls'],
    ['a TLS 1.2/1.3 record header', [0x16, 0x03, 0x03], 'tls'],
    ['an HTTP request', [...Buffer.from('GET / HTTP/1.1')], 'plaintext'],
    ['a handshake byte followed by something other than a version', [0x16, 0x04], 'plaintext'],
    ['a lone handshake byte', [0x16], 'need-more'],
    ['nothing yet', [], 'need-more'],
    ['a Redis inline command', [...Buffer.from('PING\r\n')], 'plaintext'],
  ];
  for (const [what, bytes, want] of cases) {
    it(`Should classify ${what} as ${want}`, () => {
      expect(classifyFirstBytes(Buffer.from(bytes))).to.equal(want);
    });
  }
});

describe('resolveTarget (outbound destination and allowed identities)', () => {
  const st = new SidecarState();
  st.update({
    endpoints: {
      payments: { addresses: ['10.0.0.1:9001', '10.0.0.2:9001'], spiffeIds: ['spiffe://td/ns/pay/sa/api'] },
      'ledger:9002': { addresses: ['10.0.1.1:9002'], spiffeIds: ['spiffe://td/ns/fin/sa/ledger'] },
      empty: { addresses: [], spiffeIds: [] },
    },
  });
  const snap = st.current();

  it('Should round-robin over the listed addresses and allow only the listed identities', () => {
    const a = resolveTarget({ kind: 'service', service: 'payments' }, snap, 0);
    const b = resolveTarget({ kind: 'service', service: 'payments' }, snap, 1);
    expect(a).to.deep.equal({ address: '10.0.0.1:9001', spiffeIds: ['spiffe://td/ns/pay/sa/api'] });
    expect(b).to.deep.equal({ address: '10.0.0.2:9001', spiffeIds: ['spiffe://td/ns/pay/sa/api'] });
  });

  it('Should prefer a service:port entry and otherwise use the port asked for', () => {
    expect(resolveTarget({ kind: 'service', service: 'ledger', port: 9002 }, snap, 0)).to.deep.equal({ address: '10.0.1.1:9002', spiffeIds: ['spiffe://td/ns/fin/sa/ledger'] });
    expect(resolveTarget({ kind: 'service', service: 'payments', port: 8443 }, snap, 0)).to.deep.equal({ address: '10.0.0.1:8443', spiffeIds: ['spiffe://td/ns/pay/sa/api'] });
  });

  it('Should keep an IPv6 endpoint in brackets when it uses the port asked for', () => {
    const v6 = new SidecarState();
    v6.update({ endpoints: { cart: { addresses: ['[fd00::7]:9001'], spiffeIds: ['spiffe://td/ns/shop/sa/cart'] } } });
    expect(resolveTarget({ kind: 'service', service: 'cart', port: 8443 }, v6.current(), 0)).to.deep.equal({ address: '[fd00::7]:8443', spiffeIds: ['spiffe://td/ns/shop/sa/cart'] });
  });

  it('Should fail closed for an unknown or empty service', () => {
    expect(resolveTarget({ kind: 'service', service: 'nope' }, snap, 0)).to.have.property('error');
    expect(resolveTarget({ kind: 'service', service: 'empty' }, snap, 0)).to.have.property('error');
  });

  it('Should use an explicit target as given', () => {
    expect(resolveTarget({ kind: 'explicit', address: '1.2.3.4:5', spiffeId: 'spiffe://td/ns/a/sa/b' }, snap, 7)).to.deep.equal({ address: '1.2.3.4:5', spiffeIds: ['spiffe://td/ns/a/sa/b'] });
  });
});

describe('upstreamHeaders (what the app receives on /http ports)', () => {
  it('Should drop a client-sent x-forwarded-client-cert and hop-by-hop headers, and add ours', () => {
    const out = upstreamHeaders(
      ['Host', 'cart', 'x-forwarded-client-cert', 'URI=spiffe://evil', 'Connection', 'keep-alive', 'Keep-Alive', 'timeout=5', 'Upgrade', 'h2c', 'X-Request-Id', 'abc'],
      'By=a;URI=b',
    );
    expect(out).to.deep.equal(['Host', 'cart', 'X-Request-Id', 'abc', 'x-forwarded-client-cert', 'By=a;URI=b']);
  });

  it('Should drop every client-sent x-forwarded-client-cert whatever its letter case', () => {
    const out = upstreamHeaders(['X-Forwarded-Client-Cert', 'URI=spiffe://evil', 'host', 'cart', 'X-FORWARDED-CLIENT-CERT', 'URI=spiffe://evil2'], 'By=a;URI=b');
    expect(out).to.deep.equal(['host', 'cart', 'x-forwarded-client-cert', 'By=a;URI=b']);
  });

  it('Should send no x-forwarded-client-cert at all for a plaintext peer', () => {
    expect(upstreamHeaders(['host', 'cart', 'x-forwarded-client-cert', 'URI=spiffe://evil'], undefined)).to.deep.equal(['host', 'cart']);
  });

  it('Should keep repeated headers as separate lines, in order', () => {
    expect(upstreamHeaders(['Host', 'cart', 'Accept', 'a', 'Accept', 'b'], undefined)).to.deep.equal(['Host', 'cart', 'Accept', 'a', 'Accept', 'b']);
  });

  it('Should pass te only as te: trailers, with its connection option, and only when the client listed trailers', () => {
    expect(upstreamHeaders(['Host', 'cart', 'TE', 'gzip, trailers'], undefined)).to.deep.equal(['Host', 'cart', 'te', 'trailers', 'connection', 'te']);
    expect(upstreamHeaders(['Host', 'cart', 'te', 'gzip'], undefined)).to.deep.equal(['Host', 'cart']);
    expect(upstreamHeaders(['Host', 'cart', 'te', 'trailers'], undefined, undefined, 'websocket')).to.deep.equal(['Host', 'cart', 'te', 'trailers', 'upgrade', 'websocket', 'connection', 'upgrade, te']);
    expect(upstreamHeaders(['Host', 'cart'], undefined, undefined, 'websocket')).to.deep.equal(['Host', 'cart', 'upgrade', 'websocket', 'connection', 'upgrade']);
  });

  it('Should add the given host only when the client sent none', () => {
    expect(upstreamHeaders(['Accept', 'a'], undefined, '127.0.0.1:8080')).to.deep.equal(['Accept', 'a', 'host', '127.0.0.1:8080']);
    expect(upstreamHeaders(['HOST', 'cart'], undefined, '127.0.0.1:8080')).to.deep.equal(['HOST', 'cart']);
  });
});

describe('ambiguousRequestHeaders (requests refused with 400 on /http ports)', () => {
  it('Should refuse a second Host, whatever the letter case', () => {
    expect(ambiguousRequestHeaders(['Host', 'public.example', 'HOST', 'admin.example'])).to.equal('more than one host header');
  });

  it('Should refuse repeated or conflicting framing headers', () => {
    expect(ambiguousRequestHeaders(['Host', 'a', 'Transfer-Encoding', 'chunked', 'transfer-encoding', 'chunked'])).to.equal('more than one transfer-encoding header');
    expect(ambiguousRequestHeaders(['Host', 'a', 'Content-Length', '5', 'Content-Length', '5'])).to.equal('more than one content-length header');
    expect(ambiguousRequestHeaders(['Host', 'a', 'Content-Length', '5', 'Transfer-Encoding', 'chunked'])).to.equal('both transfer-encoding and content-length');
  });

  it('Should pass ordinary requests, repeated list headers included', () => {
    expect(ambiguousRequestHeaders(['Host', 'a', 'Accept', 'x', 'Accept', 'y', 'Content-Length', '3'])).to.equal(undefined);
    expect(ambiguousRequestHeaders([])).to.equal(undefined);
  });
});

describe('Connection-listed headers (hop-by-hop for one hop only)', () => {
  it('Should drop the headers the client Connection header names, but never let it remove Host or smuggle XFCC', () => {
    const out = upstreamHeaders(['Host', 'cart', 'Connection', 'close, X-Hop', 'X-Hop', 'secret', 'Connection', 'x-other', 'X-Other', '1', 'X-Keep', 'k'], 'By=a;URI=b');
    expect(out).to.deep.equal(['Host', 'cart', 'X-Keep', 'k', 'x-forwarded-client-cert', 'By=a;URI=b']);
    expect(upstreamHeaders(['Host', 'cart', 'Connection', 'host'], undefined)).to.deep.equal(['Host', 'cart']);
  });

  it('Should pass an Upgrade on only as the offer we make, never the client\'s own Connection-listed headers', () => {
    const raw = ['Host', 'chat', 'Connection', 'Upgrade, HTTP2-Settings', 'Upgrade', 'websocket, h2c', 'HTTP2-Settings', 'AAMA', 'Sec-WebSocket-Key', 'k'];
    expect(upstreamHeaders(raw, undefined, undefined, 'websocket')).to.deep.equal(['Host', 'chat', 'Sec-WebSocket-Key', 'k', 'upgrade', 'websocket', 'connection', 'upgrade']);
    expect(upstreamHeaders(raw, undefined)).to.deep.equal(['Host', 'chat', 'Sec-WebSocket-Key', 'k']);
  });

  it('Should drop the headers the app Connection header names from the response', () => {
    expect(downstreamHeaders(['Content-Type', 'text/plain', 'Connection', 'X-Internal', 'X-Internal', 'v'])).to.deep.equal(['Content-Type', 'text/plain']);
  });
});

describe('downstreamHeaders (what the client receives on /http ports)', () => {
  it('Should drop the app connection management and keep everything else, repeated headers included', () => {
    expect(downstreamHeaders(['Content-Type', 'text/plain', 'Connection', 'keep-alive', 'Keep-Alive', 'timeout=5', 'Set-Cookie', 'a=1', 'Set-Cookie', 'b=2'])).to.deep.equal([
      'Content-Type',
      'text/plain',
      'Set-Cookie',
      'a=1',
      'Set-Cookie',
      'b=2',
    ]);
  });
});

describe('verifyPeer', () => {
  it('Should refuse when no certificate was presented', () => {
    const v = verifyPeer(undefined as LeafFacts | undefined, { trustDomains: new Set(['td']), revocations: makeRevocations(), now: new Date() });
    expect(v).to.deep.include({ ok: false, reason: 'no_certificate' });
  });
});

describe('Native relay verdicts in the codes the Node path reports', () => {
  it('Should map OpenSSL X509_V_ERR numbers to the codes Node uses, and X509_V_OK to none', () => {
    expect(verifyCode(0)).to.equal(undefined);
    expect(verifyCode(10)).to.equal('CERT_HAS_EXPIRED');
    expect(verifyCode(20)).to.equal('UNABLE_TO_GET_ISSUER_CERT_LOCALLY');
    expect(verifyCode(21)).to.equal('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    expect(verifyCode(19)).to.equal('SELF_SIGNED_CERT_IN_CHAIN');
    expect(verifyCode(9999)).to.equal('X509_V_ERR_9999');
  });

  it('Should turn an OpenSSL reason into the ERR_SSL_ code Node derives from it, and pass errno names through', () => {
    expect(handshakeErrorCode('SSL:tlsv1 alert unknown ca')).to.equal('ERR_SSL_TLSV1_ALERT_UNKNOWN_CA');
    expect(handshakeErrorCode('SSL:wrong version number')).to.equal('ERR_SSL_WRONG_VERSION_NUMBER');
    expect(handshakeErrorCode('ECONNRESET')).to.equal('ECONNRESET');
    expect(handshakeErrorCode('EOF')).to.equal('EOF');
  });
});
