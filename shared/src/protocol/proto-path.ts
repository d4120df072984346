/**
 * Where the discovery .proto lives, resolved from this file so it works from
 * `src/` under ts-node and from `dist/src/` after `tsc -b` alike.
 */
import { join } from 'node:path';

/** The root folder for proto imports (`shared/proto`). */
export const PROTO_ROOT = join(__dirname, '..', '..', ...(__dirname.includes(`${join('dist', 'src')}`) ? ['..'] : []), 'proto');
/** The discovery service definition, relative to PROTO_ROOT. */
export const DISCOVERY_PROTO_FILE = 'trellis/discovery/v1/discovery.proto';
/** The fully-qualified service name. */
export const DISCOVERY_SERVICE = 'trellis.discovery.v1.Discovery';
