/**
 * @trellis/tls-relay: the sidecar's native mTLS relay engine. One epoll thread
 * does TLS handshakes, record crypto and byte relaying; every decision (peer
 * validity, policy, app port) stays in TypeScript, which answers each
 * 'handshake' event with allow() or close(). At run time `Relay` is null when the
 * addon was not built (`loadError` says why; the type follows the spec and
 * does not say so); the sidecar then relays with node:tls.
 */
/** An SSL_CTX built from PEMs. Free it with release(); connections already using it keep it alive (refcounted). */
export interface RelayContext { release(): void }

export type RelayEvent =
  /** The TLS handshake completed. Nothing is read from either side until allow() or close(). */
  | { kind: 'handshake'; id: number; ok: true;
      /** DER certificates as the peer presented them, leaf first (server side: SSL_get_peer_certificate
       *  followed by SSL_get_peer_cert_chain minus a duplicate leaf; client side: SSL_get_peer_cert_chain).
       *  Empty when the peer sent no certificate. On a resumed session: whatever OpenSSL still has (may be empty). */
      chain: Buffer[];
      /** SSL_get_verify_result(): 0 = X509_V_OK, else the X509_V_ERR_* number. */
      verifyError: number;
      resumed: boolean;
      /** SSL_get_version(), e.g. 'TLSv1.3'. */
      protocol: string;
      /** The negotiated key-exchange group by OpenSSL's name (SSL_get0_group_name: 'X25519MLKEM768', 'x25519', 'secp256r1'); '' when none. */
      group: string }
  /** The handshake (or, for connectTls, the TCP connect) failed. A 'closed' event follows. */
  | { kind: 'handshake'; id: number; ok: false;
      /** 'ECONNREFUSED' / 'ECONNRESET' / 'EHOSTUNREACH' / 'ETIMEDOUT' / other errno names for socket errors,
       *  'EOF' when the peer closed mid-handshake, else 'SSL:' + ERR_reason_error_string of the first queued OpenSSL error
       *  (e.g. 'SSL:tlsv1 alert unknown ca'). */
      error: string;
      /** SSL_get_verify_result() if an SSL object existed, else 0. */
      verifyError: number }
  /** Client side (connectTls): a session ticket to offer on a later connectTls to the same destination (i2d_SSL_SESSION). */
  | { kind: 'session'; id: number; session: Buffer }
  /** The connection is gone (both fds closed). Exactly once per id, always last. */
  | { kind: 'closed'; id: number;
      /** Bytes on the plaintext fd and on the TLS fd (raw TCP bytes, records included). */
      plainIn: number; plainOut: number; tlsIn: number; tlsOut: number;
      /** null for an orderly end; else 'app_connect:ECONNREFUSED' (inbound allow() could not reach the app),
       *  'ECONNRESET' etc., 'SSL:<reason>', 'closed' (close() was called). */
      error: string | null };

export declare class Relay {
  /** Starts the loop thread. onEvent runs on the JS thread (napi threadsafe function, unref'd: the engine never keeps the process alive by itself). Events of one id arrive in order. */
  constructor(onEvent: (ev: RelayEvent) => void);
  /**
   * Builds a TLS context. server=true: requests a client certificate (SSL_VERIFY_PEER, no FAIL_IF_NO_PEER_CERT),
   * server-side session cache with a session id context, TLS 1.3 tickets on. server=false: verifies the server (SSL_VERIFY_PEER).
   * Both: min TLS 1.2, max TLS 1.3, OpenSSL default ciphers, groups from `groups` (an OpenSSL groups list,
   * SSL_CTX_set1_groups_list, e.g. 'X25519MLKEM768/X25519:P-256'; absent: OpenSSL's default), the verify callback ACCEPTS whatever the
   * chain verdict is (preverify result is recorded and reported as verifyError; TS refuses), chainPem = leaf then
   * intermediates (all are sent), keyPem = PKCS#8 or SEC1 EC key, caPem = one or more roots concatenated
   * (all go into the X509_STORE). read_ahead on; SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS.
   * Throws a plain Error with a message naming the field and OpenSSL's reason ('chainPem: no certificate found',
   * 'keyPem: ...', 'keyPem does not match the certificate', 'caPem: ...'). Never puts key material in a message.
   * Wipe temporary key buffers (OPENSSL_cleanse) and free the EVP_PKEY once installed.
   * resumption=false (default true): no tickets, no session cache, no 'session' events; every handshake is full
   * (the sidecar turns it off on server contexts while federation is in force, since a resumed session shows
   * only the leaf and federation needs the presented intermediates).
   */
  context(opts: { server: boolean; chainPem: string; keyPem: string; caPem: string; resumption?: boolean; groups?: string }): RelayContext;
  /** Inbound. Takes a dup() of `fd` (an accepted TCP socket; the caller closes its own copy afterwards) and starts the server handshake
   *  when the peer's first bytes arrive: until then the connection holds no SSL object or buffer (a peer that closes first gets
   *  handshake error 'EOF'). Returns the connection id (> 0). */
  acceptTls(fd: number, ctx: RelayContext): number;
  /** Outbound. Takes a dup() of `plainFd` (the app's accepted socket; the caller keeps its own copy until it decides), connects to host:port
   *  (IPv4 or IPv6 literal only; throw TypeError otherwise), client handshake (SNI not set), optionally offering `session`.
   *  `firstBytes` (at most 1 MiB, else TypeError): bytes the app sent that the caller already read off its socket; they are sent
   *  before anything read from `plainFd` once the relay starts, and counted in plainIn. */
  connectTls(plainFd: number, host: string, port: number, ctx: RelayContext, session: Buffer | null, firstBytes?: Buffer | null): number;
  /** After a successful 'handshake'. Inbound (acceptTls): connect to appHost:appPort (literal IP) non-blocking, then relay;
   *  connect failure → 'closed' with error 'app_connect:<ERRNO>'. Outbound (connectTls): relay at once (arguments ignored). */
  allow(id: number, appHost?: string, appPort?: number): void;
  /** Closes the connection now (refusal, revocation, drain timeout). A 'closed' event with error 'closed' follows unless it already closed. Unknown ids are ignored. */
  close(id: number): void;
  /** Open connections (diagnostics). */
  readonly size: number;
  /** Closes every connection and joins the thread. Also run from a napi env cleanup hook so process exit never hangs or crashes. */
  stop(): void;
}


/** Why the addon did not load, when it did not. */
export declare const loadError: Error | null;
