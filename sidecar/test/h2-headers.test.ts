/**
 * Header lists across HTTP/2 and HTTP/1.1 hops (sidecar/src/http/h2-headers.ts)
 * and the h2c preface check: pure functions, table-driven.
 */
import { expect } from 'chai';
import { ambiguousH2Headers, classifyHttpPreface, downstreamTrailers, h1RequestHeaders, h2RequestHeaders, h2ResponseFromH1, h2TrailersFromH1, isGrpc, takesTrailers } from '../src/index';

describe('HTTP/2 header translation', () => {
  const ambiguous: Array<[string[], string | undefined]> = [
    [[':authority', 'a.example', ':path', '/x'], undefined],
    [[':authority', 'a.example', 'host', 'A.example'], undefined],
    [[':authority', 'a.example', 'host', 'admin.internal'], ':authority and host name different hosts'],
    [[':authority', 'a', ':authority', 'b'], 'more than one :authority header'],
    [['host', 'a', 'host', 'a'], 'more than one host header'],
    [['content-length', '1', 'content-length', '1'], 'more than one content-length header'],
  ];
  for (const [raw, want] of ambiguous) {
    it(`Should read ${JSON.stringify(raw)} as ${want ?? 'one request'}`, () => {
      expect(ambiguousH2Headers(raw)).to.equal(want);
    });
  }

  it('Should forward the judged path, drop connection headers and every client XFCC, and add ours and te: trailers', () => {
    const raw = [':method', 'POST', ':path', '/a/../b', ':authority', 'svc', ':scheme', 'https', 'x-forwarded-client-cert', 'URI=forged', 'X-Forwarded-Client-Cert', 'URI=forged2', 'te', 'trailers', 'connection', 'keep-alive', 'keep-alive', '5', 'grpc-timeout', '1S', 'cookie', 'a=1', 'cookie', 'b=2'];
    expect(h2RequestHeaders(raw, 'POST', '/b', 'svc', 'By=me;URI=peer')).to.deep.equal({
      ':method': 'POST',
      ':scheme': 'http',
      ':path': '/b',
      ':authority': 'svc',
      'grpc-timeout': '1S',
      cookie: ['a=1', 'b=2'],
      te: 'trailers',
      'x-forwarded-client-cert': 'By=me;URI=peer',
    });
  });

  it('Should translate an HTTP/2 request to HTTP/1.1 with Host from :authority and without pseudo-headers or client XFCC, asking the app for trailers only when the client takes them', () => {
    expect(h1RequestHeaders([':method', 'GET', ':path', '/x', ':authority', 'svc:80', 'accept', '*/*', 'x-forwarded-client-cert', 'forged', 'te', 'trailers'], 'svc:80', 'ours')).to.deep.equal(['accept', '*/*', 'host', 'svc:80', 'x-forwarded-client-cert', 'ours', 'te', 'trailers', 'connection', 'te']);
    expect(h1RequestHeaders([':method', 'GET', ':path', '/x', ':authority', 'svc:80', 'te', 'gzip'], 'svc:80', 'ours')).to.deep.equal(['host', 'svc:80', 'x-forwarded-client-cert', 'ours']);
  });

  it('Should drop the headers HTTP/2 forbids from an HTTP/1.1 answer, and those its Connection header lists', () => {
    expect(h2ResponseFromH1(200, ['Content-Type', 'text/plain', 'Connection', 'keep-alive, X-Hop', 'Keep-Alive', 'timeout=5', 'Transfer-Encoding', 'chunked', 'X-Hop', '1', 'Upgrade', 'h2c'])).to.deep.equal({ ':status': 200, 'content-type': 'text/plain' });
  });

  it('Should take trailers only when te lists them, and know gRPC by its content type', () => {
    expect([takesTrailers(['te', 'trailers']), takesTrailers(['TE', 'gzip, trailers']), takesTrailers(['te', 'gzip']), takesTrailers([])]).to.deep.equal([true, true, false, false]);
    expect([isGrpc('application/grpc'), isGrpc('application/grpc+proto'), isGrpc('application/grpc-web'), isGrpc('application/json'), isGrpc(undefined)]).to.deep.equal([true, true, false, false, false]);
  });

  it('Should pass trailers to an HTTP/1.1 client without pseudo-headers or the framing, routing and connection fields a trailer may not carry', () => {
    const raw = [':status', '200', 'grpc-status', '0', 'X-Checksum', 'abc', 'content-length', '5', 'Transfer-Encoding', 'chunked', 'connection', 'close', 'host', 'evil', 'trailer', 'x', 'te', 'trailers', 'x-rows', '3'];
    expect(downstreamTrailers(raw)).to.deep.equal([
      ['grpc-status', '0'],
      ['X-Checksum', 'abc'],
      ['x-rows', '3'],
    ]);
    // As HTTP/2 trailers: lower-case names, repeats kept.
    expect(h2TrailersFromH1(['X-Checksum', 'abc', 'Content-Length', '5', 'X-Tag', 'a', 'x-tag', 'b'])).to.deep.equal({ 'x-checksum': 'abc', 'x-tag': ['a', 'b'] });
  });

  const prefaces: Array<[string, string]> = [
    ['PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'h2'],
    ['PRI * HTTP/2.0\r\n', 'need-more'],
    ['', 'need-more'],
    ['GET / HTTP/1.1\r\n', 'http/1.1'],
    ['PRI * HTTP/1.1\r\n', 'http/1.1'],
  ];
  for (const [bytes, want] of prefaces) {
    it(`Should classify ${JSON.stringify(bytes)} as ${want}`, () => {
      expect(classifyHttpPreface(Buffer.from(bytes, 'latin1'))).to.equal(want);
    });
  }
});
