/**
 * The report loop: the sidecar report goes to the control plane when it
 * changed, and again on every new stream; a control plane that takes none
 * gets none, and a later one that does gets the current report.
 */
import { expect } from 'chai';
import type { SidecarReport } from '@trellis/shared';
import { ReportLoop } from '../src/control/report-loop';

const report = (allowed: number): SidecarReport => ({ windowSeconds: 300, calls: allowed ? [{ peer: '', direction: 'inbound', allowed, refused: [] }] : [], workload: { ready: true, readyReason: 'ready', dataPath: 'node', renewAt: null, rotations: [] } });

describe('report loop', () => {
  it('Should send the report when it changed, not again while it is the same, and again on a new stream', () => {
    const sent: string[] = [];
    let takes = true;
    let onConnection: (up: boolean) => void = () => undefined;
    let current = report(0);
    const loop = new ReportLoop({ sink: { sendReport: (b) => (takes ? (sent.push(b.toString()), true) : false), onConnectionChange: (l) => (onConnection = l) }, build: () => current });
    expect(loop.tick()).to.equal(true);
    expect(loop.tick()).to.equal(false);
    current = report(1);
    expect(loop.tick()).to.equal(true);
    onConnection(true);
    expect(loop.tick()).to.equal(true);
    expect(sent.map((t) => (JSON.parse(t) as SidecarReport).calls.length)).to.deep.equal([0, 1, 1]);
    // A control plane that takes no reports: nothing is recorded as sent, so the next one that does gets it.
    takes = false;
    current = report(2);
    onConnection(true);
    expect(loop.tick()).to.equal(false);
    takes = true;
    expect(loop.tick()).to.equal(true);
    expect(sent).to.have.length(4);
  });
});
