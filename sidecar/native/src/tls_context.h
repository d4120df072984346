// Builds the SSL_CTX the engine's connections share, from PEM text.
#pragma once
#include <openssl/ssl.h>
#include <string>

namespace trellis_relay {

struct ContextOptions {
  bool server = false;
  /** Session resumption (tickets and the session cache); off, every handshake is a full one. */
  bool resumption = true;
  std::string chain_pem;
  std::string key_pem;  // wiped by BuildContext
  std::string ca_pem;
  /** The OpenSSL groups list (the key-exchange policy); empty: OpenSSL's default. */
  std::string groups;
};

/** Called on the loop thread when a client connection receives a session it could resume later. */
using NewSessionCallback = int (*)(SSL *, SSL_SESSION *);

/**
 * A context per the spec: TLS 1.2..1.3, peer verification that records but
 * never enforces the verdict (TypeScript refuses), the whole chain sent,
 * every CA in the store. Returns null and sets *error to a message naming
 * the field at fault; never puts key material in it. Wipes opts.key_pem.
 */
SSL_CTX *BuildContext(ContextOptions &opts, NewSessionCallback on_session, std::string *error);

}  // namespace trellis_relay
