/** @trellis/testkit: fixtures and fakes shared by every test suite. */
export { makeTmpDir } from './tmp-dir';
export { FakeClock } from './fake-clock';
export { openssl, hasOpenssl } from './openssl';
export type { OpensslResult } from './openssl';
export { freePort } from './free-port';
export { trellisSync, trellisSpawn, REPO_ROOT, TRELLIS_BIN, CORPORA_DIR } from './cli-runner';
export type { CliResult } from './cli-runner';
export { TestCa, generateTestKey, nodeCert } from './test-ca';
export type { TestCert, TestKeyPair, LeafOptions } from './test-ca';
export { waitFor } from './wait-for';
export { httpGet } from './http-get';
export { ProcessGroup } from './process-group';
export type { HttpGetOptions } from './http-get';
export { startKubeApiServer, requireKubeApiServer, kubeApiServerAvailability } from './kube-api-server';
export type { KubeApiServer, KubeApiServerAvailability, KubectlResult, StartKubeApiServerOptions } from './kube-api-server';
