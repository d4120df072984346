// The handshake stage of a connection: waiting for the peer's first bytes
// (no OpenSSL state until then), the TLS handshake, and the handshake event
// with the peer's chain for the verdict in TypeScript.
#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <sys/socket.h>

#include "conn_stages.h"
#include "errors.h"
#include "ssl_facts.h"

namespace trellis_relay {
namespace {

void ReportHandshake(Conn &c) {
  Event *ev = new Event();
  ev->kind = Event::kHandshake;
  ev->id = c.id;
  ev->ok = true;
  ev->verify_error = SSL_get_verify_result(c.ssl);
  ev->resumed = SSL_session_reused(c.ssl) == 1;
  const char *version = SSL_get_version(c.ssl);
  ev->protocol = version != nullptr ? version : "";
  ev->group = NegotiatedGroup(c.ssl);
  STACK_OF(X509) *chain = SSL_get_peer_cert_chain(c.ssl);
  if (c.server) {
    // The server-side chain leaves out the leaf; a resumed session keeps only the leaf.
    X509 *leaf = SSL_get1_peer_certificate(c.ssl);
    if (leaf != nullptr) ev->chain.push_back(Der(leaf));
    for (int i = 0; chain != nullptr && i < sk_X509_num(chain); i++) {
      X509 *cert = sk_X509_value(chain, i);
      if (i == 0 && leaf != nullptr && X509_cmp(cert, leaf) == 0) continue;
      ev->chain.push_back(Der(cert));
    }
    X509_free(leaf);
  } else {
    for (int i = 0; chain != nullptr && i < sk_X509_num(chain); i++) ev->chain.push_back(Der(sk_X509_value(chain, i)));
  }
  c.handshake_reported = true;
  c.engine->Emit(ev);
  for (std::string &session : c.early_sessions) {
    Event *sev = new Event();
    sev->kind = Event::kSession;
    sev->id = c.id;
    sev->session.swap(session);
    c.engine->Emit(sev);
  }
  std::vector<std::string>().swap(c.early_sessions);
}

}  // namespace

void FailHandshake(Conn &c, const std::string &error) {
  Event *ev = new Event();
  ev->kind = Event::kHandshake;
  ev->id = c.id;
  ev->ok = false;
  ev->error = error;
  ev->has_error = true;
  ev->verify_error = c.ssl != nullptr ? SSL_get_verify_result(c.ssl) : 0;
  c.handshake_reported = true;
  c.engine->Emit(ev);
  Close(c, true, error);
}

void Handshake(Conn &c) {
  ERR_clear_error();
  errno = 0;
  int r = SSL_do_handshake(c.ssl);
  int saved = errno;
  if (r == 1) {
    c.hs_want = 0;
    c.phase = Conn::kAwaitVerdict;
    ReportHandshake(c);
    UpdateInterest(c);
    return;
  }
  int err = SSL_get_error(c.ssl, r);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
    c.hs_want = err;
    if (err == SSL_ERROR_WANT_READ) c.tls_in = false; else c.tls_out = false;
    UpdateInterest(c);
    return;
  }
  bool eof = false;
  FailHandshake(c, SslFailure(c.ssl, r, saved, &eof));
}

void BeginHandshake(Conn &c) {
  if (SSL_set_fd(c.ssl, c.tls_fd) != 1) {
    FailHandshake(c, TakeSslError("cannot attach the socket"));
    return;
  }
  c.phase = Conn::kHandshaking;
  Handshake(c);
}

// kAwaitingBytes: the peer's first bytes (or its FIN) arrived. Only now is
// the SSL object made and the handshake begun, so a flood of idle
// connections holds no OpenSSL state.
void FirstBytes(Conn &c) {
  unsigned char probe;
  ssize_t n;
  do {
    n = recv(c.tls_fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    c.tls_in = false;
    return;
  }
  if (n <= 0) {
    // Gone before saying anything: no SSL was ever needed.
    FailHandshake(c, n == 0 ? "EOF" : ErrnoName(errno));
    return;
  }
  c.ssl = SSL_new(c.ctx);
  SSL_CTX_free(c.ctx);  // the SSL holds its own reference
  c.ctx = nullptr;
  if (c.ssl == nullptr) {
    FailHandshake(c, TakeSslError("out of memory"));
    return;
  }
  SSL_set_app_data(c.ssl, &c);
  SSL_set_accept_state(c.ssl);
  BeginHandshake(c);
}

}  // namespace trellis_relay
