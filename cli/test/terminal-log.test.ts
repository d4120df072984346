import { expect } from 'chai';
import { terminalLine } from '../src/up/terminal-log';

describe('What trellis up shows on the terminal of a child log line', () => {
  const cases: Array<[string, string, string | undefined]> = [
    ['Should keep an info line in the log file only', '{"time":"t","level":"info","component":"sidecar","msg":"sidecar ready"}', undefined],
    ['Should keep a debug line in the log file only', '{"time":"t","level":"debug","msg":"x"}', undefined],
    ['Should show a warning as one readable line with its name', '{"time":"t","level":"warn","component":"sidecar","msg":"control plane disconnected","spiffeId":"spiffe://a/b"}', '[payments/sidecar] warning: control plane disconnected'],
    [
      'Should show an error with its code, error and fix',
      '{"time":"t","level":"error","msg":"bad identity","code":"TRELLIS_X","fix":"use --trust-domain a","error":{"name":"E","code":"TRELLIS_Y","message":"boom"}}',
      '[payments/sidecar] error: bad identity (code=TRELLIS_X, error=boom [TRELLIS_Y], fix=use --trust-domain a)',
    ],
    ['Should keep an app\'s own plain output in the log file only', 'GET / 200', undefined],
    ['Should keep a line that only looks like JSON in the log file only', '{not json', undefined],
  ];
  for (const [title, line, want] of cases) {
    it(title, () => {
      expect(terminalLine('payments/sidecar', line)).to.equal(want);
    });
  }
});
