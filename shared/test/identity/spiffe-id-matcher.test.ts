import { expect } from 'chai';
import { compileSpiffeIdMatcher, type SpiffeIdMatcherSpec } from '../../src/identity/spiffe-id-matcher';
import { parseSpiffeId, SpiffeIdErrorCode } from '../../src/identity/spiffe-id';
import { CORPORA, describeWith, readCorpusJson } from '@trellis/testkit';

interface MatcherCase {
  matcher: { kind: string; id?: string; ids?: string[]; trust_domain?: string };
  results: Record<string, boolean>;
}

function spec(m: MatcherCase['matcher']): SpiffeIdMatcherSpec {
  switch (m.kind) {
    case 'any':
      return { kind: 'any' };
    case 'exact':
      return { kind: 'exact', id: m.id! };
    case 'one_of':
      return { kind: 'one_of', ids: m.ids! };
    case 'member_of_trust_domain':
      return { kind: 'member_of_trust_domain', trustDomain: m.trust_domain! };
    default:
      throw new Error(`unknown corpus matcher ${m.kind}`);
  }
}

describeWith(CORPORA, 'SPIFFE ID matchers', () => {
  const cases = readCorpusJson<{ matcher_cases: MatcherCase[] }>('spiffe-id', 'manifest.json').matcher_cases;

  it('has the corpus matcher cases loaded', () => {
    expect(cases.length).to.be.greaterThan(4);
  });

  for (const c of cases) {
    it(`gives every corpus verdict for ${JSON.stringify(c.matcher)}`, () => {
      const match = compileSpiffeIdMatcher(spec(c.matcher));
      for (const [input, want] of Object.entries(c.results)) {
        const id = input === '<zero ID>' ? undefined : parseSpiffeId(input);
        expect(match(id).ok, `${input} (parsed)`).to.equal(want);
        if (id) expect(match(id.toString()).ok, `${input} (string)`).to.equal(want);
      }
    });
  }

  it('says why a peer was refused', () => {
    const v = compileSpiffeIdMatcher({ kind: 'exact', id: 'spiffe://foo.test/A' })('spiffe://foo.test/B');
    expect(v.ok).to.equal(false);
    expect(!v.ok && v.reason).to.contain('spiffe://foo.test/B');
  });

  it('refuses an invalid ID or trust domain at compile time, not at the handshake', () => {
    expect(() => compileSpiffeIdMatcher({ kind: 'exact', id: 'spiffe://foo.test/' })).to.throw().with.property('code', SpiffeIdErrorCode.TRAILING_SLASH);
    expect(() => compileSpiffeIdMatcher({ kind: 'one_of', ids: ['spiffe://ok.test/a', 'nope'] })).to.throw().with.property('code', SpiffeIdErrorCode.BAD_SCHEME);
    expect(() => compileSpiffeIdMatcher({ kind: 'member_of_trust_domain', trustDomain: 'Foo.test' }))
      .to.throw()
      .with.property('code', SpiffeIdErrorCode.BAD_TRUST_DOMAIN_CHAR);
  });

  it('does not match an invalid ID string that looks like a member', () => {
    const m = compileSpiffeIdMatcher({ kind: 'member_of_trust_domain', trustDomain: 'foo.test' });
    expect(m('spiffe://foo.test/a/../b').ok).to.equal(false);
  });

  it('refuses everything for an unknown matcher kind', () => {
    const m = compileSpiffeIdMatcher({ kind: 'prefix' } as unknown as SpiffeIdMatcherSpec);
    expect(m('spiffe://foo.test/a').ok).to.equal(false);
  });
});
