import { expect } from 'chai';
import fc from 'fast-check';
import { isPathNormalization, normalizePath, PATH_NORMALIZATIONS } from '../../src';

/** [input, NONE, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES]; a string starting with "!" is a refusal whose reason contains the rest. */
const TABLE: Array<[string, string, string, string, string]> = [
  // The issue's attack strings: every one is /admin once normalized (NONE passes them as sent).
  ['/./admin', '/./admin', '/admin', '/admin', '/admin'],
  ['/x/../admin', '/x/../admin', '/admin', '/admin', '/admin'],
  ['/%2e/admin', '/%2e/admin', '/admin', '/admin', '/admin'],
  ['/%61dmin', '/%61dmin', '/admin', '/admin', '/admin'],
  // Dot segments (RFC 3986 §5.2.4), encoded dots in any case.
  ['/%2E%2e/admin', '/%2E%2e/admin', '/admin', '/admin', '/admin'],
  ['/.%2e/admin', '/.%2e/admin', '/admin', '/admin', '/admin'],
  ['/a/b/../../../admin', '/a/b/../../../admin', '/admin', '/admin', '/admin'],
  ['/a/./b/.', '/a/./b/.', '/a/b/', '/a/b/', '/a/b/'],
  ['/a/..', '/a/..', '/', '/', '/'],
  ['/..', '/..', '/', '/', '/'],
  ['/', '/', '/', '/', '/'],
  ['/...', '/...', '/...', '/...', '/...'],
  ['/.a/..b', '/.a/..b', '/.a/..b', '/.a/..b', '/.a/..b'],
  // Unreserved characters are decoded; others keep their escape, upper-cased; no double decoding.
  ['/%7Euser/%5F%2D', '/%7Euser/%5F%2D', '/~user/_-', '/~user/_-', '/~user/_-'],
  ['/a%20b/%3c', '/a%20b/%3c', '/a%20b/%3C', '/a%20b/%3C', '/a%20b/%3C'],
  ['/%252e%252e/admin', '/%252e%252e/admin', '/%252e%252e/admin', '/%252e%252e/admin', '/%252e%252e/admin'],
  // Escaped slashes: kept by BASE and MERGE_SLASHES, decoded (then resolved and merged) by DECODE_AND_MERGE_SLASHES.
  ['/x%2F..%2Fadmin', '/x%2F..%2Fadmin', '/x%2F..%2Fadmin', '/x%2F..%2Fadmin', '/admin'],
  ['/x%2f..%5cadmin', '/x%2f..%5cadmin', '/x%2F..%5Cadmin', '/x%2F..%5Cadmin', '/admin'],
  ['/some%2fdata/%61%62%63', '/some%2fdata/%61%62%63', '/some%2Fdata/abc', '/some%2Fdata/abc', '/some/data/abc'],
  // Backslashes are slashes to Node's URL parser and most frameworks.
  ['/some\\data', '!backslash', '/some/data', '/some/data', '/some/data'],
  ['/x\\..\\admin', '!backslash', '/admin', '/admin', '/admin'],
  // Repeated slashes: only the MERGE options merge them (after dot segments, as Envoy).
  ['//admin', '//admin', '//admin', '/admin', '/admin'],
  ['/a//../admin', '/a//../admin', '/a/admin', '/a/admin', '/a/admin'],
  ['//x/../admin', '//x/../admin', '//admin', '/admin', '/admin'],
  ['/a%2F%2Fb', '/a%2F%2Fb', '/a%2F%2Fb', '/a%2F%2Fb', '/a/b'],
  // Refused in every mode: what cannot be normalized (or forwarded) safely.
  ['/a%00', '!%00', '!%00', '!%00', '!%00'],
  ['/a\u0000', '!NUL', '!NUL', '!NUL', '!NUL'],
  ['/a b', '!space', '!space', '!space', '!space'],
  ['/a\tb', '!control', '!control', '!control', '!control'],
  ['/a\u007f', '!control', '!control', '!control', '!control'],
  ['/caf\u00e9', '!ASCII', '!ASCII', '!ASCII', '!ASCII'],
  ['/a%zz', '!invalid percent-encoding "%zz"', '!invalid', '!invalid', '!invalid'],
  ['/a%4', '!invalid percent-encoding "%4"', '!invalid', '!invalid', '!invalid'],
  ['/a%', '!invalid', '!invalid', '!invalid', '!invalid'],
  ['/public#/../admin', '!fragment', '!fragment', '!fragment', '!fragment'],
  ['admin', '!start with "/"', '!start with "/"', '!start with "/"', '!start with "/"'],
  ['', '!start with "/"', '!start with "/"', '!start with "/"', '!start with "/"'],
];

describe('Path normalization (Istio meshConfig.pathNormalization)', () => {
  for (const row of TABLE) {
    const [input, ...wants] = row;
    PATH_NORMALIZATIONS.forEach((mode, i) => {
      const want = wants[i]!;
      it(`Should ${want.startsWith('!') ? `refuse ${JSON.stringify(input)} (${want.slice(1)})` : `turn ${JSON.stringify(input)} into ${JSON.stringify(want)}`} under ${mode}`, () => {
        const got = normalizePath(input, mode);
        if (want.startsWith('!')) {
          expect(got.ok, JSON.stringify(got)).to.equal(false);
          if (!got.ok) expect(got.reason).to.contain(want.slice(1));
        } else {
          expect(got).to.deep.equal({ ok: true, path: want });
        }
      });
    });
  }

  const pathChars = fc.constantFrom('a', 'B', '/', '.', '..', '%2e', '%2E', '%61', '%41', '%2f', '%2F', '%5c', '%5C', '\\', '%7e', '-', '_', '~', '%25', '%3b', ';', '=', ':', '@', '!', "'");
  const paths = fc.array(pathChars, { maxLength: 24 }).map((parts) => '/' + parts.join(''));

  for (const mode of PATH_NORMALIZATIONS) {
    it(`Should be idempotent under ${mode}: normalizing a normalized path changes nothing`, () => {
      fc.assert(
        fc.property(paths, (p) => {
          const once = normalizePath(p, mode);
          if (!once.ok) return true;
          expect(normalizePath(once.path, mode)).to.deep.equal(once);
          return true;
        }),
        { numRuns: 2000 },
      );
    });
  }

  it('Should leave no dot segment and no backslash, and decode no unreserved escape twice, under BASE', () => {
    fc.assert(
      fc.property(paths, (p) => {
        const r = normalizePath(p, 'BASE');
        if (!r.ok) return true;
        expect(r.path.split('/')).to.not.include.members(['.', '..']);
        expect(r.path).to.not.contain('\\');
        expect(r.path).to.not.match(/%(?:[46][1-9A-F]|[57][0-9A]|3[0-9]|2D|2E|5F|7E)/);
        return true;
      }),
      { numRuns: 2000 },
    );
  });

  // The oracle: a Node application that routes on `new URL(req.url, base).pathname` and then decodes it.
  // For paths without escaped slashes or an escaped "%", what BASE hands the policy (and forwards) must be
  // what that application routes on, once decoded.
  const appView = (p: string): string => decodeURIComponent(new URL('http://app.local' + p).pathname);
  const oraclePaths = fc.array(fc.constantFrom('a', 'admin', '/', '.', '..', '%2e', '%2E', '%61', '%41dmin', '\\', '%7e', '-', '_'), { maxLength: 16 }).map((parts) => '/' + parts.join(''));

  it("Should route where a Node app (new URL() then decoding) routes, for every path without escaped slashes, under BASE", () => {
    fc.assert(
      fc.property(oraclePaths, (p) => {
        const r = normalizePath(p, 'BASE');
        expect(r.ok).to.equal(true);
        if (r.ok) expect(decodeURIComponent(r.path), p).to.equal(appView(p));
        return true;
      }),
      { numRuns: 3000 },
    );
    for (const attack of ['/./admin', '/x/../admin', '/%2e/admin', '/%61dmin']) {
      const r = normalizePath(attack, 'BASE');
      expect(r.ok && r.path).to.equal('/admin');
      expect(appView(attack)).to.equal('/admin');
    }
  });

  it("Should know exactly Istio's four option names, in Istio's spelling", () => {
    for (const name of ['NONE', 'BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES']) expect(isPathNormalization(name), name).to.equal(true);
    for (const name of ['base', 'DEFAULT', '', 'NONE ', undefined, 1, null]) expect(isPathNormalization(name), String(name)).to.equal(false);
  });
});
