#include "tls_context.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <vector>

#include "errors.h"

namespace trellis_relay {
namespace {

const unsigned char kSessionIdContext[] = "trellis";

// The verdict is TypeScript's: OpenSSL's result is kept (SSL_get_verify_result)
// and reported with the handshake, and the handshake goes on whatever it is.
int AcceptAnyChain(int, X509_STORE_CTX *) { return 1; }

// Every certificate in `pem`, in order. Empty with *error set on a parse
// failure other than the normal end of input.
std::vector<X509 *> ReadCertificates(const std::string &pem, const char *field, std::string *error) {
  std::vector<X509 *> out;
  BIO *bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) {
    *error = std::string(field) + ": " + TakeSslReason("out of memory");
    return out;
  }
  ERR_clear_error();
  for (;;) {
    X509 *cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
    if (cert == nullptr) break;
    out.push_back(cert);
  }
  unsigned long last = ERR_peek_last_error();
  bool clean_end = last == 0 || (ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE);
  if (!clean_end) {
    for (X509 *c : out) X509_free(c);
    out.clear();
    *error = std::string(field) + ": " + TakeSslReason("unreadable certificate");
  } else if (out.empty()) {
    *error = std::string(field) + ": no certificate found";
  }
  ERR_clear_error();
  BIO_free(bio);
  return out;
}

void FreeAll(std::vector<X509 *> &certs) {
  for (X509 *c : certs) X509_free(c);
  certs.clear();
}

EVP_PKEY *ReadKey(const std::string &pem, std::string *error) {
  BIO *bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) {
    *error = "keyPem: " + TakeSslReason("out of memory");
    return nullptr;
  }
  ERR_clear_error();
  // Reads PKCS#8 ("PRIVATE KEY") and SEC1 ("EC PRIVATE KEY") alike; no password callback.
  EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  if (key == nullptr) {
    unsigned long code = ERR_peek_last_error();
    if (code == 0 || (ERR_GET_LIB(code) == ERR_LIB_PEM && ERR_GET_REASON(code) == PEM_R_NO_START_LINE)) {
      *error = "keyPem: no private key found";
      ERR_clear_error();
    } else {
      *error = "keyPem: " + TakeSslReason("unreadable private key");
    }
  }
  BIO_free(bio);
  return key;
}

}  // namespace

SSL_CTX *BuildContext(ContextOptions &opts, NewSessionCallback on_session, std::string *error) {
  SSL_CTX *ctx = nullptr;
  EVP_PKEY *key = nullptr;
  std::vector<X509 *> chain;
  std::vector<X509 *> roots;
  bool ok = false;

  do {
    chain = ReadCertificates(opts.chain_pem, "chainPem", error);
    if (chain.empty()) break;
    key = ReadKey(opts.key_pem, error);
    if (key == nullptr) break;
    roots = ReadCertificates(opts.ca_pem, "caPem", error);
    if (roots.empty()) break;
    if (X509_check_private_key(chain[0], key) != 1) {
      ERR_clear_error();
      *error = "keyPem does not match the certificate";
      break;
    }

    ctx = SSL_CTX_new(opts.server ? TLS_server_method() : TLS_client_method());
    if (ctx == nullptr) {
      *error = "context: " + TakeSslReason("cannot create an SSL_CTX");
      break;
    }
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 || SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1) {
      *error = "context: " + TakeSslReason("cannot set the protocol versions");
      break;
    }
    // No renegotiation (so SSL_write rarely needs to read); a FIN without
    // close_notify ends the direction as an orderly EOF (the spec counts it so).
    // No certificate compression (RFC 8879) either way: OpenSSL 3.2+ would
    // otherwise Brotli-compress our certificate at high quality on every
    // handshake with a peer that asks, and ask peers to compress theirs
    // (measured: a Node 24 client spent 4.3 ms of CPU per handshake with it,
    // 1.9 ms without). node:tls contexts do the same (shared/src/tls).
    uint64_t options = SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF;
#ifdef SSL_OP_NO_TX_CERTIFICATE_COMPRESSION
    // OpenSSL 3.2+ (the node binary's); the system OpenSSL 3.0 the sanitizer
    // and fuzz builds use has no certificate compression to turn off.
    options |= SSL_OP_NO_TX_CERTIFICATE_COMPRESSION | SSL_OP_NO_RX_CERTIFICATE_COMPRESSION;
#endif
    SSL_CTX_set_options(ctx, options);
    // The key-exchange policy: X25519MLKEM768 first (or alone, or not at all), as node:tls's ecdhCurve.
    if (!opts.groups.empty() && SSL_CTX_set1_groups_list(ctx, opts.groups.c_str()) != 1) {
      *error = "groups: " + TakeSslReason("groups list refused") + " (" + opts.groups + ")";
      break;
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_read_ahead(ctx, 1);
    // One read() takes up to four full records (RELEASE_BUFFERS frees it on idle connections).
    SSL_CTX_set_default_read_buffer_len(ctx, 4 * SSL3_RT_MAX_PLAIN_LENGTH + 4 * SSL3_RT_MAX_ENCRYPTED_OVERHEAD);

    if (SSL_CTX_use_certificate(ctx, chain[0]) != 1) {
      *error = "chainPem: " + TakeSslReason("certificate refused");
      break;
    }
    bool chain_ok = true;
    for (size_t i = 1; i < chain.size(); i++) {
      if (SSL_CTX_add1_chain_cert(ctx, chain[i]) != 1) {
        *error = "chainPem: " + TakeSslReason("intermediate refused");
        chain_ok = false;
        break;
      }
    }
    if (!chain_ok) break;
    if (SSL_CTX_use_PrivateKey(ctx, key) != 1) {
      *error = "keyPem: " + TakeSslReason("private key refused");
      break;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
      ERR_clear_error();
      *error = "keyPem does not match the certificate";
      break;
    }
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    bool roots_ok = true;
    for (X509 *root : roots) {
      if (X509_STORE_add_cert(store, root) != 1) {
        unsigned long code = ERR_peek_last_error();
        // The same root twice in the bundle is harmless.
        if (ERR_GET_REASON(code) == X509_R_CERT_ALREADY_IN_HASH_TABLE) {
          ERR_clear_error();
          continue;
        }
        *error = "caPem: " + TakeSslReason("root refused");
        roots_ok = false;
        break;
      }
    }
    if (!roots_ok) break;

    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, AcceptAnyChain);
    if (!opts.resumption) {
      SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
      SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
      if (opts.server) SSL_CTX_set_num_tickets(ctx, 0);
    } else if (opts.server) {
      if (SSL_CTX_set_session_id_context(ctx, kSessionIdContext, sizeof(kSessionIdContext) - 1) != 1) {
        *error = "context: " + TakeSslReason("cannot set the session id context");
        break;
      }
      SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
      SSL_CTX_set_num_tickets(ctx, 1);
      // TLS 1.3 resumes from stateless tickets; the cache only serves TLS 1.2
      // session ids, and OpenSSL's default (20480 sessions with peer certs) is
      // tens of MB per context.
      SSL_CTX_sess_set_cache_size(ctx, 1024);
    } else {
      SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
      SSL_CTX_sess_set_new_cb(ctx, on_session);
    }
    ok = true;
  } while (false);

  OPENSSL_cleanse(&opts.key_pem[0], opts.key_pem.size());
  opts.key_pem.clear();
  EVP_PKEY_free(key);  // the context holds its own reference
  FreeAll(chain);
  FreeAll(roots);
  if (!ok) {
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return nullptr;
  }
  return ctx;
}

}  // namespace trellis_relay
