#include "ssl_facts.h"

#include <openssl/err.h>
#include <openssl/x509.h>

#include "errors.h"

namespace trellis_relay {

std::string Der(X509 *cert) {
  int len = i2d_X509(cert, nullptr);
  if (len <= 0) return std::string();
  std::string out(static_cast<size_t>(len), '\0');
  unsigned char *p = reinterpret_cast<unsigned char *>(&out[0]);
  if (i2d_X509(cert, &p) != len) return std::string();
  return out;
}

std::string SslFailure(SSL *ssl, int ret, int saved_errno, bool *eof) {
  int err = SSL_get_error(ssl, ret);
  *eof = false;
  if (err == SSL_ERROR_ZERO_RETURN) {
    *eof = true;
    ERR_clear_error();
    return "EOF";
  }
  if (err == SSL_ERROR_SYSCALL) {
    if (ERR_peek_error() != 0) return TakeSslError("syscall");
    if (saved_errno == 0) {
      *eof = true;
      return "EOF";
    }
    return ErrnoName(saved_errno);
  }
  if (err == SSL_ERROR_SSL) {
    unsigned long code = ERR_peek_error();
    if (ERR_GET_LIB(code) == ERR_LIB_SSL && ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
      ERR_clear_error();
      *eof = true;
      return "EOF";
    }
    return TakeSslError("protocol error");
  }
  ERR_clear_error();
  return "SSL:unexpected state " + std::to_string(err);
}

uint64_t TlsBytes(SSL *ssl, bool in) {
  if (ssl == nullptr) return 0;
  BIO *bio = in ? SSL_get_rbio(ssl) : SSL_get_wbio(ssl);
  if (bio == nullptr) return 0;
  return in ? BIO_number_read(bio) : BIO_number_written(bio);
}

// The key-exchange group the handshake used, by OpenSSL's name ("X25519MLKEM768", "x25519",
// "secp256r1"); empty when there was none. SSL_get0_group_name names provider groups such as the
// hybrids too (OpenSSL 3.2+); older headers (the fuzz build's system OpenSSL) use the NID.
std::string NegotiatedGroup(SSL *ssl) {
#if OPENSSL_VERSION_NUMBER >= 0x30200000L
  const char *name = SSL_get0_group_name(ssl);
#else
  const char *name = SSL_group_to_name(ssl, SSL_get_negotiated_group(ssl));
#endif
  return name != nullptr ? name : "";
}

}  // namespace trellis_relay
