import { expect } from 'chai';
import { applyRedirect, buildRedirectRules, parseRedirectPorts, renderRestore, type RunResult } from '../src';

describe('redirect rules', () => {
  it('redirects each app port to its proxy port in PREROUTING and for local non-loopback dials', () => {
    expect(buildRedirectRules({ inbound: [{ appPort: 8080, proxyPort: 15100 }], proxyUid: 1337 }).map((r) => r.join(' '))).to.deep.equal([
      '-A PREROUTING -p tcp -j TRELLIS_INBOUND',
      '-A OUTPUT -p tcp -j TRELLIS_OUTPUT',
      '-A TRELLIS_INBOUND -p tcp --dport 8080 -j REDIRECT --to-ports 15100',
      '-A TRELLIS_OUTPUT -m owner --uid-owner 1337 -j RETURN',
      '-A TRELLIS_OUTPUT -d 127.0.0.0/8 -j RETURN',
      '-A TRELLIS_OUTPUT -p tcp -m addrtype --dst-type LOCAL --dport 8080 -j REDIRECT --to-ports 15100',
    ]);
  });

  it('exempts the proxy UID before any redirect in the OUTPUT chain', () => {
    const rules = buildRedirectRules({ inbound: [{ appPort: 1, proxyPort: 2 }, { appPort: 3, proxyPort: 4 }], proxyUid: 7 }).filter((r) => r[1] === 'TRELLIS_OUTPUT');
    expect(rules[0]).to.include('--uid-owner');
    expect(rules.slice(1).some((r) => r.includes('--uid-owner'))).to.equal(false);
  });

  it('declares its own chains so iptables-restore --noflush replaces them on a re-run', () => {
    const text = renderRestore({ inbound: [{ appPort: 80, proxyPort: 15100 }] });
    expect(text.split('\n').slice(0, 3)).to.deep.equal(['*nat', ':TRELLIS_INBOUND - [0:0]', ':TRELLIS_OUTPUT - [0:0]']);
    expect(text.trimEnd().endsWith('COMMIT')).to.equal(true);
    expect(text).to.not.include('--uid-owner');
  });

  it('exempts ::1 rather than 127.0.0.0/8 in the IPv6 rule set, and is otherwise the same', () => {
    const plan = { inbound: [{ appPort: 8080, proxyPort: 15100 }], proxyUid: 1337 };
    const v4 = buildRedirectRules(plan, 4).map((r) => r.join(' '));
    const v6 = buildRedirectRules(plan, 6).map((r) => r.join(' '));
    expect(v6).to.include('-A TRELLIS_OUTPUT -d ::1/128 -j RETURN');
    expect(v6.filter((r) => !r.includes('::1'))).to.deep.equal(v4.filter((r) => !r.includes('127.0.0.0/8')));
  });

  it('programs ip6tables after iptables when asked for both families', async () => {
    const programs: string[] = [];
    await applyRedirect({ inbound: [{ appPort: 80, proxyPort: 15100 }] }, {
      run: async (program, args) => {
        programs.push(program);
        return { status: args.includes('-D') ? 1 : 0, stdout: '', stderr: '' };
      },
      families: [4, 6],
    });
    expect(programs.filter((p) => p.endsWith('-restore'))).to.deep.equal(['iptables-restore', 'ip6tables-restore']);
  });

  it('parses repeated and comma-separated --inbound values', () => {
    expect(parseRedirectPorts(['8080=15100,9090=15101', '7070=15102'])).to.deep.equal([
      { appPort: 8080, proxyPort: 15100 },
      { appPort: 9090, proxyPort: 15101 },
      { appPort: 7070, proxyPort: 15102 },
    ]);
  });

  for (const bad of [['8080'], ['8080=0'], ['x=1'], ['80=15100,80=15101'], ['80=90,90=15100']]) {
    it(`refuses --inbound ${bad.join(' ')} with TRELLIS_INJECTOR_BAD_REDIRECT`, () => {
      expect(() => parseRedirectPorts(bad)).to.throw().with.property('code', 'TRELLIS_INJECTOR_BAD_REDIRECT');
    });
  }

  it('removes old jumps, then loads the rules, and reports iptables failure with its code', async () => {
    const calls: Array<[string, string[], string | undefined]> = [];
    let deletions = 0;
    const run = async (program: string, args: readonly string[], input?: string): Promise<RunResult> => {
      calls.push([program, [...args], input]);
      if (args.includes('-D')) return { status: deletions++ < 1 ? 0 : 1, stdout: '', stderr: '' };
      return { status: 4, stdout: '', stderr: 'iptables-restore: line 4 failed\n' };
    };
    const err = await applyRedirect({ inbound: [{ appPort: 80, proxyPort: 15100 }] }, { run }).catch((e: unknown) => e);
    expect(err).to.have.property('code', 'TRELLIS_INJECTOR_IPTABLES_FAILED');
    const last = calls[calls.length - 1]!;
    expect(last[0]).to.equal('iptables-restore');
    expect(last[1]).to.deep.equal(['-w', '--noflush']);
    expect(last[2]).to.equal(renderRestore({ inbound: [{ appPort: 80, proxyPort: 15100 }] }));
    expect(calls.filter((c) => c[1].includes('-D')).length).to.equal(3, 'a jump found once is deleted again until none is left');
  });
});
