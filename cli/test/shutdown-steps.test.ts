/**
 * A stopping server's shutdown: every step runs in order, a failing step does
 * not stop the rest, and a step that never finishes is named and abandoned at
 * the deadline so the process can exit.
 */
import { expect } from 'chai';
import { createLogger } from '@trellis/shared';
import { runShutdownSteps } from '../src/shutdown-steps';

function capture(): { logger: ReturnType<typeof createLogger>; lines: () => Array<Record<string, unknown>> } {
  let text = '';
  const logger = createLogger({ component: 'test', sink: { write: (s: string) => void (text += s) } });
  return { logger, lines: () => text.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe('shutdown steps under a deadline', () => {
  it('Should run every step in order, going on after one that fails and saying which failed', async () => {
    const { logger, lines } = capture();
    const ran: string[] = [];
    const outcome = await runShutdownSteps(
      [
        { name: 'a', run: () => void ran.push('a') },
        { name: 'b', run: async () => { ran.push('b'); throw new Error('lease not released'); } },
        { name: 'c', run: async () => void ran.push('c') },
      ],
      5000,
      logger,
    );
    expect(outcome).to.deep.equal({ done: true });
    expect(ran).to.deep.equal(['a', 'b', 'c']);
    expect(lines()).to.have.length(1);
    expect(lines()[0]).to.include({ level: 'warn', step: 'b' });
  });

  it('Should give up at the deadline on a step that never finishes, naming it and the steps left, and never run them', async () => {
    const { logger, lines } = capture();
    const ran: string[] = [];
    const outcome = await runShutdownSteps(
      [
        { name: 'drain', run: () => void ran.push('drain') },
        { name: 'lease release', run: () => new Promise<void>(() => ran.push('lease release')) },
        { name: 'informers', run: () => void ran.push('informers') },
      ],
      50,
      logger,
    );
    expect(outcome).to.deep.equal({ done: false, stuckAt: 'lease release' });
    expect(ran).to.deep.equal(['drain', 'lease release']);
    const error = lines().find((l) => l.level === 'error');
    expect(error, 'an error line').to.not.equal(undefined);
    expect(error).to.deep.include({ stuckAt: 'lease release', left: ['lease release', 'informers'] });
  });
});
