import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { appendFileSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTmpDir } from '@trellis/testkit';
import { chainRecord, EMPTY_LOG_HASH, sha256Hex, verifyAuditChain } from '../../src/ca/audit-chain';
import { AuditLog } from '../../src/ca/audit-log';

const rec = (i: number): Record<string, string> => ({ time: new Date(Date.UTC(2025, 0, 1, 0, 0, i)).toISOString(), serial: `0a${i}`, spiffeId: `spiffe://example.org/ns/shop/sa/w${i}`, notAfter: '2025-01-01T01:00:00.000Z', keyType: 'ec-p256', requester: 'test' });

describe('the audit log hash chain', () => {
  let tmp: { dir: string; cleanup(): void };
  let file: string;
  beforeEach(() => {
    tmp = makeTmpDir('trellis-audit-');
    file = join(tmp.dir, 'audit.log');
  });
  afterEach(() => tmp.cleanup());

  const lines = (): string[] => readFileSync(file, 'utf8').split('\n').filter(Boolean);
  const verify = () => verifyAuditChain(readFileSync(file));

  it('Should write each record as one JSON line chained to the one before it, durable once append resolves', async () => {
    const log = new AuditLog(file);
    await Promise.all([log.append(rec(1)), log.append(rec(2))]);
    await log.append(rec(3));
    const docs = lines().map((l) => JSON.parse(l) as Record<string, string>);
    expect(docs).to.have.length(3);
    expect(docs[0]).to.deep.include({ ...rec(1), prev: EMPTY_LOG_HASH });
    expect(docs[1]!['prev']).to.equal(docs[0]!['hash']);
    expect(docs[2]!['prev']).to.equal(docs[1]!['hash']);
    const r = verify();
    expect(r).to.deep.include({ ok: true, records: 3, unchainedPrefixLines: 0, head: docs[2]!['hash'], problem: null });
  });

  it('Should name the record that was edited, removed or cut short', async () => {
    const log = new AuditLog(file);
    for (let i = 1; i <= 4; i++) await log.append(rec(i));
    const good = lines();

    writeFileSync(file, [good[0], good[1]!.replace('w2', 'w9'), good[2], good[3]].join('\n') + '\n');
    expect(verify().problem).to.deep.equal({ line: 2, reason: 'the record does not match its hash (edited)' });

    writeFileSync(file, [good[0], good[2], good[3]].join('\n') + '\n');
    expect(verify().problem).to.deep.equal({ line: 2, reason: 'prev does not match the record before it (a record was removed, inserted or reordered)' });

    writeFileSync(file, [good[1], good[2], good[3]].join('\n') + '\n');
    expect(verify().problem!.line, 'the first record removed').to.equal(1);

    writeFileSync(file, [good[0], good[1], good[2]].join('\n') + '\n' + good[3]!.slice(0, 40));
    expect(verify().problem).to.deep.equal({ line: 4, reason: 'incomplete record: the line has no end (a torn write)' });

    writeFileSync(file, [good[0], good[1], JSON.stringify(rec(7)), good[3]].join('\n') + '\n');
    expect(verify().problem!.line, 'an unchained line after chained ones').to.equal(3);
  });

  it('Should cover the lines of a log written before chaining with the first chained record, and catch an edit among them', async () => {
    const legacy = [JSON.stringify(rec(1)), JSON.stringify({ time: rec(2).time, event: 'revocation.added', value: 'x' })].join('\n') + '\n';
    writeFileSync(file, legacy);
    await new AuditLog(file).append(rec(3));
    expect(JSON.parse(lines()[2]!)['prev']).to.equal(sha256Hex(legacy));
    expect(verify()).to.deep.include({ ok: true, records: 1, unchainedPrefixLines: 2 });
    writeFileSync(file, readFileSync(file, 'utf8').replace('0a1', '0a8'));
    expect(verify().problem).to.deep.include({ line: 3 });
  });

  it('Should cut an incomplete last line left by a crashed writer and go on chaining from the last complete record', async () => {
    const log = new AuditLog(file);
    await log.append(rec(1));
    const complete = readFileSync(file, 'utf8');
    appendFileSync(file, chainRecord(rec(2), 'f'.repeat(64)).line.slice(0, 50));
    const repaired: number[] = [];
    await new AuditLog(file, { onRepair: (n) => repaired.push(n) }).append(rec(3));
    expect(repaired).to.deep.equal([50]);
    expect(readFileSync(file, 'utf8').startsWith(complete)).to.equal(true);
    expect(verify()).to.deep.include({ ok: true, records: 2 });
  });

  it('Should leave the log as it was when a batch cannot be written, and take the next record', async () => {
    const log = new AuditLog(file, { lockWaitMs: 0 });
    await log.append(rec(1));
    const before = readFileSync(file, 'utf8');
    // A record the JSON encoder refuses stands in for a failing write: nothing of the batch may remain.
    const bad = { ...rec(2), n: BigInt(1) } as unknown as Record<string, string>;
    let err: unknown;
    await log.append(bad).catch((e: unknown) => (err = e));
    expect((err as { code?: string }).code).to.equal('TRELLIS_CA_AUDIT_WRITE_FAILED');
    expect(readFileSync(file, 'utf8')).to.equal(before);
    await log.append(rec(3));
    expect(verify()).to.deep.include({ ok: true, records: 2 });
  });

  it('Should keep one chain when two processes append at the same time', async function () {
    this.timeout(20_000);
    const mod = require.resolve('../../src/ca/audit-log');
    const script = `const { AuditLog } = require(${JSON.stringify(mod)}); const log = new AuditLog(${JSON.stringify(file)});
      (async () => { for (let i = 0; i < 150; i++) await log.append({ time: new Date().toISOString(), event: 'child', i }); })();`;
    const child = spawn(process.execPath, ['-e', script], { stdio: 'inherit' });
    const done = new Promise<number | null>((r) => child.on('exit', r));
    const log = new AuditLog(file);
    for (let i = 0; i < 150; i++) await log.append({ ...rec(i), i: String(i) });
    expect(await done).to.equal(0);
    const r = verify();
    expect(r.problem).to.equal(null);
    expect(r.records).to.equal(300);
  });

  it('Should start over after a failure: the next append succeeds once the cause is gone', async () => {
    const log = new AuditLog(file);
    await log.append(rec(1));
    truncateSync(file, 10); // someone cut the file: its head no longer matches ours
    await log.append(rec(2));
    expect(readFileSync(file, 'utf8').split('\n').filter(Boolean)).to.have.length(1, 'the torn fragment was cut, the new record chains from nothing');
  });
});
