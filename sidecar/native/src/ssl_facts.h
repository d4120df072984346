// Facts read from an OpenSSL connection for the events the engine reports:
// a certificate's DER, why a call failed (in the spec's error vocabulary),
// byte counters and the negotiated key-exchange group. Loop thread only.
#pragma once
#include <openssl/ssl.h>

#include <cstdint>
#include <string>

namespace trellis_relay {

/** The DER of `cert`; empty when it cannot be encoded. */
std::string Der(X509 *cert);

/**
 * Why an SSL call failed, in the spec's vocabulary ('EOF', an errno name or
 * 'SSL:<reason>'); sets *eof for a clean or abrupt end of stream.
 * `saved_errno` is errno right after the call.
 */
std::string SslFailure(SSL *ssl, int ret, int saved_errno, bool *eof);

/** TLS bytes read (`in`) or written on the socket under `ssl`; 0 without one. */
uint64_t TlsBytes(SSL *ssl, bool in);

/** The key-exchange group the handshake used, by OpenSSL's name; empty when there was none. */
std::string NegotiatedGroup(SSL *ssl);

}  // namespace trellis_relay
