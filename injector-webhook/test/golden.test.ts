import { expect } from 'chai';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_INJECTOR_CONFIG, injectManifests, parseInjectorConfig } from '../src';

/**
 * Golden files: `golden/NAME.yaml` → `golden/NAME.injected.yaml`, with optional
 * injector settings in `golden/NAME.config.yaml`. A golden that no longer
 * matches fails the test; after a deliberate change, rewrite them with
 * `UPDATE_GOLDEN=1` and review the diff.
 */
const GOLDEN_DIR = join(__dirname, '..', '..', 'test', 'golden');
const update = process.env.UPDATE_GOLDEN === '1';

describe('injection golden files', () => {
  const inputs = readdirSync(GOLDEN_DIR).filter((f) => f.endsWith('.yaml') && !f.endsWith('.injected.yaml') && !f.endsWith('.config.yaml'));

  it('has golden inputs to check', () => {
    expect(inputs.length).to.be.greaterThan(2);
  });

  for (const input of inputs) {
    const name = input.replace(/\.yaml$/, '');
    it(`injects ${input} exactly as ${name}.injected.yaml says`, () => {
      const configFile = join(GOLDEN_DIR, `${name}.config.yaml`);
      const config = existsSync(configFile) ? parseInjectorConfig(readFileSync(configFile, 'utf8'), configFile) : DEFAULT_INJECTOR_CONFIG;
      const actual = injectManifests(readFileSync(join(GOLDEN_DIR, input), 'utf8'), input, config).yaml;
      const goldenFile = join(GOLDEN_DIR, `${name}.injected.yaml`);
      if (update) writeFileSync(goldenFile, actual);
      expect(existsSync(goldenFile), `missing ${goldenFile}; run with UPDATE_GOLDEN=1`).to.equal(true);
      const golden = readFileSync(goldenFile, 'utf8');
      expect(actual, `${goldenFile} is stale; rerun with UPDATE_GOLDEN=1 and review the diff`).to.equal(golden);
    });

    it(`finds nothing more to inject in ${name}.injected.yaml (idempotent)`, () => {
      const goldenFile = join(GOLDEN_DIR, `${name}.injected.yaml`);
      const golden = readFileSync(goldenFile, 'utf8');
      expect(injectManifests(golden, goldenFile, DEFAULT_INJECTOR_CONFIG).yaml).to.equal(golden);
    });
  }
});
