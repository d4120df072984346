/** @trellis/testkit: fixtures and fakes shared by every test suite. */
export { makeTmpDir } from './tmp-dir';
export { FakeClock } from './fake-clock';
export { openssl, hasOpenssl } from './openssl';
export type { OpensslResult } from './openssl';
export { freePort, reservePorts, addressInUse } from './free-port';
export type { PortReservation } from './free-port';
export { trellisSync, trellisSpawn, REPO_ROOT, TRELLIS_BIN } from './cli-runner';
export { optionalDependency, describeWith, itWith, skipUnless } from './optional-dependency';
export type { OptionalDependency, OptionalDependencySpec } from './optional-dependency';
export { CORPORA, CORPORA_DIR, corpusPath, readCorpusJson, readCorpusFile, SOFTHSM, SOFTHSM_MODULE, NETNS, KUBECTL, OPENSSL } from './test-dependencies';
export type { CliResult } from './cli-runner';
export { TestCa, generateTestKey, nodeCert } from './test-ca';
export type { TestCert, TestKeyPair, LeafOptions } from './test-ca';
export { waitFor } from './wait-for';
export { httpGet } from './http-get';
export { ProcessGroup } from './process-group';
export type { HttpGetOptions } from './http-get';
