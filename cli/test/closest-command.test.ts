import { expect } from 'chai';
import { closestCommand, editDistance } from '../src/closest-command';

const NAMES = ['ca init', 'ca sign', 'check', 'sidecar', 'up', 'validate'];

describe('The closest command to an unknown one', () => {
  const cases: Array<[string, string[], string | undefined]> = [
    ['Should find a command with one letter wrong', ['chek'], 'check'],
    ['Should find a subcommand with two letters swapped', ['ca', 'sing'], 'ca sign'],
    ['Should find a whole command whose group is mistyped', ['cs', 'init'], 'ca init'],
    ['Should compare only as many words as the command has', ['valdate', 'mesh.yaml'], 'validate'],
    ['Should suggest the group for a mistyped group alone', ['cs'], 'ca'],
    ['Should suggest nothing for a word like no command', ['NOSUCHCOMMAND'], undefined],
    ['Should suggest nothing for a short word that is two edits from everything', ['xy'], undefined],
  ];
  for (const [title, words, want] of cases) {
    it(title, () => {
      expect(closestCommand(words, NAMES)).to.equal(want);
    });
  }

  it('Should count a swap of adjacent letters as one edit, and ignore case', () => {
    expect(editDistance('sing', 'sign')).to.equal(1);
    expect(editDistance('CHECK', 'check')).to.equal(0);
    expect(editDistance('', 'up')).to.equal(2);
    expect(editDistance('kitten', 'sitting')).to.equal(3);
  });
});
