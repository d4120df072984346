#include "conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "errors.h"

namespace trellis_relay {
namespace {

// Work done for one connection before the loop serves the others (x 64 KiB).
constexpr int kBurst = 16;

void SetNoDelay(int fd) {
  int one = 1;
  // Best effort: a failure only costs latency.
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

std::string Der(X509 *cert) {
  int len = i2d_X509(cert, nullptr);
  if (len <= 0) return std::string();
  std::string out(static_cast<size_t>(len), '\0');
  unsigned char *p = reinterpret_cast<unsigned char *>(&out[0]);
  if (i2d_X509(cert, &p) != len) return std::string();
  return out;
}

// Why an SSL call failed, in the spec's vocabulary. `saved_errno` is errno
// right after the call.
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

void Close(Conn &c, bool has_error, const std::string &error) {
  c.engine->Destroy(&c, has_error, error);
}

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

// Registers exactly the readiness the connection now waits for. False if the
// connection was closed because epoll refused.
bool UpdateInterest(Conn &c) {
  uint32_t tls = 0, plain = 0;
  switch (c.phase) {
    case Conn::kAwaitingBytes:
      tls = EPOLLIN;
      break;
    case Conn::kTcpConnecting:
      tls = EPOLLOUT;
      break;
    case Conn::kHandshaking:
      tls = c.hs_want == SSL_ERROR_WANT_WRITE ? EPOLLOUT : EPOLLIN;
      break;
    case Conn::kAwaitVerdict:
      break;  // nothing is read from either side until the verdict
    case Conn::kAppConnecting:
      plain = EPOLLOUT;
      break;
    case Conn::kRelaying:
      if (!c.tls_eof && c.to_plain.empty() && c.ssl_read_wait != SSL_ERROR_WANT_WRITE) tls |= EPOLLIN;
      if (c.ssl_read_wait == SSL_ERROR_WANT_WRITE) tls |= EPOLLOUT;
      if (c.to_tls_wait == SSL_ERROR_WANT_WRITE || c.shutdown_wait == SSL_ERROR_WANT_WRITE) tls |= EPOLLOUT;
      if (c.to_tls_wait == SSL_ERROR_WANT_READ || c.shutdown_wait == SSL_ERROR_WANT_READ) tls |= EPOLLIN;
      if (!c.plain_eof && c.to_tls.empty()) plain |= EPOLLIN;
      if (!c.to_plain.empty()) plain |= EPOLLOUT;
      break;
  }
  if (!c.engine->Watch(c, true, tls) || !c.engine->Watch(c, false, plain)) {
    Close(c, true, ErrnoName(errno));
    return false;
  }
  return true;
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

// tls -> plain. False when the connection was closed.
bool PumpToPlain(Conn &c) {
  unsigned char *scratch = c.engine->scratch();
  int burst = 0;
  for (;;) {
    if (!c.to_plain.empty()) {
      if (!c.plain_out) return true;
      ssize_t n = send(c.plain_fd, c.to_plain.data(), c.to_plain.size(), MSG_NOSIGNAL);
      if (n > 0) {
        c.plain_out_bytes += static_cast<uint64_t>(n);
        c.to_plain.Consume(static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        c.plain_out = false;
        return true;
      }
      Close(c, true, ErrnoName(n < 0 ? errno : EPIPE));
      return false;
    }
    if (c.tls_eof) {
      if (!c.plain_write_closed) {
        c.plain_write_closed = true;
        // ENOTCONN only means the app already went away; the other direction will say so.
        (void)shutdown(c.plain_fd, SHUT_WR);
      }
      return true;
    }
    // Only SSL_read pulls from the TLS socket, so tls_in == false means
    // OpenSSL holds no complete record either (read_ahead included).
    bool ready = c.ssl_read_wait == SSL_ERROR_WANT_WRITE ? c.tls_out : c.tls_in;
    if (!ready) return true;
    if (++burst > kBurst) {
      c.engine->QueueAgain(c);
      return true;
    }
    ERR_clear_error();
    errno = 0;
    int r = SSL_read(c.ssl, scratch, static_cast<int>(c.engine->scratch_size()));
    int saved = errno;
    if (r > 0) {
      c.ssl_read_wait = 0;
      size_t len = static_cast<size_t>(r);
      // Records OpenSSL already holds (read_ahead) go out in the same send():
      // one syscall for several records. Gathering stops when OpenSSL holds
      // nothing more; whatever else stops it (an incomplete record the socket
      // cannot finish yet, close_notify, an error) the next SSL_read reports.
      bool stopped_short = false;
      while (len < c.engine->scratch_size() && SSL_has_pending(c.ssl) == 1) {
        ERR_clear_error();
        int more = SSL_read(c.ssl, scratch + len, static_cast<int>(c.engine->scratch_size() - len));
        if (more <= 0) {
          stopped_short = true;
          break;
        }
        len += static_cast<size_t>(more);
      }
      r = static_cast<int>(len);
      // Nothing more held by OpenSSL: the socket is most likely drained too,
      // so wait for epoll (level-triggered: it reports any byte that did
      // arrive) rather than spend a read() on EAGAIN. Not when the gathering
      // stopped on something else (close_notify, an error): the next
      // SSL_read must report it, since no new byte may ever wake us for it.
      if (!stopped_short && SSL_has_pending(c.ssl) == 0) c.tls_in = false;
      ssize_t n = c.plain_out ? send(c.plain_fd, scratch, len, MSG_NOSIGNAL) : -1;
      if (n < 0 && !c.plain_out) errno = EAGAIN;
      if (n == r) {
        c.plain_out_bytes += len;
        continue;
      }
      if (n >= 0) {
        c.plain_out_bytes += static_cast<uint64_t>(n);
        c.to_plain.Assign(scratch + n, len - static_cast<size_t>(n));
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        if (errno != EINTR) c.plain_out = false;
        c.to_plain.Assign(scratch, len);
        continue;
      }
      Close(c, true, ErrnoName(errno));
      return false;
    }
    int err = SSL_get_error(c.ssl, r);
    if (err == SSL_ERROR_WANT_READ) {
      c.ssl_read_wait = 0;
      c.tls_in = false;
      return true;
    }
    if (err == SSL_ERROR_WANT_WRITE) {
      c.ssl_read_wait = SSL_ERROR_WANT_WRITE;
      c.tls_out = false;
      return true;
    }
    bool eof = false;
    std::string why = SslFailure(c.ssl, r, saved, &eof);
    if (eof) {
      // close_notify, or a FIN without one: the peer finished this direction.
      c.tls_eof = true;
      c.ssl_read_wait = 0;
      continue;
    }
    Close(c, true, why);
    return false;
  }
}

// Sends close_notify and the FIN once everything from the app went out.
bool CloseTlsWrite(Conn &c) {
  if (c.shutdown_wait == SSL_ERROR_WANT_WRITE && !c.tls_out) return true;
  if (c.shutdown_wait == SSL_ERROR_WANT_READ && !c.tls_in) return true;
  ERR_clear_error();
  errno = 0;
  int r = SSL_shutdown(c.ssl);
  int saved = errno;
  if (r >= 0) {
    c.shutdown_wait = 0;
    c.tls_write_closed = true;
    (void)shutdown(c.tls_fd, SHUT_WR);
    return true;
  }
  int err = SSL_get_error(c.ssl, r);
  if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
    c.shutdown_wait = err;
    if (err == SSL_ERROR_WANT_WRITE) c.tls_out = false; else c.tls_in = false;
    return true;
  }
  bool eof = false;
  std::string why = SslFailure(c.ssl, r, saved, &eof);
  if (c.tls_eof || eof) {
    // The peer already finished and left; nothing of ours was lost.
    c.shutdown_wait = 0;
    c.tls_write_closed = true;
    return true;
  }
  Close(c, true, why);
  return false;
}

// A failed SSL_write: keep the unsent bytes (OpenSSL wants the same ones
// again) or close. False when the connection was closed.
bool SslWriteFailed(Conn &c, int r, int saved) {
  int err = SSL_get_error(c.ssl, r);
  if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
    c.to_tls_wait = err;
    if (err == SSL_ERROR_WANT_WRITE) c.tls_out = false; else c.tls_in = false;
    return true;
  }
  bool eof = false;
  std::string why = SslFailure(c.ssl, r, saved, &eof);
  Close(c, true, eof ? "EPIPE" : why);
  return false;
}

// plain -> tls. False when the connection was closed.
bool PumpToTls(Conn &c) {
  unsigned char *scratch = c.engine->scratch();
  int burst = 0;
  for (;;) {
    if (!c.to_tls.empty()) {
      if (c.to_tls_wait == SSL_ERROR_WANT_WRITE && !c.tls_out) return true;
      if (c.to_tls_wait == SSL_ERROR_WANT_READ && !c.tls_in) return true;
      ERR_clear_error();
      errno = 0;
      int r = SSL_write(c.ssl, c.to_tls.data(), static_cast<int>(c.to_tls.size()));
      int saved = errno;
      if (r > 0) {
        // A write that had to read may have buffered records for SSL_read.
        if (c.to_tls_wait == SSL_ERROR_WANT_READ) c.tls_in = true;
        c.to_tls_wait = 0;
        c.to_tls.Consume(static_cast<size_t>(r));
        continue;
      }
      if (!SslWriteFailed(c, r, saved)) return false;
      return true;
    }
    if (c.plain_eof) {
      if (!c.tls_write_closed) return CloseTlsWrite(c);
      return true;
    }
    if (!c.plain_in) return true;
    if (++burst > kBurst) {
      c.engine->QueueAgain(c);
      return true;
    }
    ssize_t n = read(c.plain_fd, scratch, c.engine->scratch_size());
    if (n > 0) {
      c.plain_in_bytes += static_cast<uint64_t>(n);
      ERR_clear_error();
      errno = 0;
      int r = SSL_write(c.ssl, scratch, static_cast<int>(n));
      int saved = errno;
      if (r == n) {
        // A short read drained the socket: wait for epoll (level-triggered)
        // rather than spend a read() on EAGAIN.
        if (static_cast<size_t>(n) < c.engine->scratch_size()) c.plain_in = false;
        continue;
      }
      if (r > 0) {
        c.to_tls.Assign(scratch + r, static_cast<size_t>(n - r));
        continue;
      }
      c.to_tls.Assign(scratch, static_cast<size_t>(n));
      if (!SslWriteFailed(c, r, saved)) return false;
      return true;
    }
    if (n == 0) {
      c.plain_eof = true;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      c.plain_in = false;
      return true;
    }
    Close(c, true, ErrnoName(errno));
    return false;
  }
}

void Relay(Conn &c) {
  if (!PumpToPlain(c)) return;
  if (!PumpToTls(c)) return;
  // Writing may have unblocked reading (and the reverse): one more pass is
  // cheap because every blocked step returns at once.
  if (!PumpToPlain(c)) return;
  if (c.tls_write_closed && c.plain_write_closed && c.to_plain.empty() && c.to_tls.empty()) {
    Close(c, false, std::string());
    return;
  }
  UpdateInterest(c);
}

void StartRelay(Conn &c) {
  c.phase = Conn::kRelaying;
  // Whatever OpenSSL read ahead during the handshake (SSL_has_pending) is
  // picked up by the first SSL_read: every readiness hint starts true.
  c.tls_in = c.tls_out = c.plain_in = c.plain_out = true;
  Relay(c);
}

void FinishTcpConnect(Conn &c) {
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(c.tls_fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err == EINPROGRESS || err == EALREADY) return;
  if (err != 0) {
    FailHandshake(c, ErrnoName(err));
    return;
  }
  BeginHandshake(c);
}

void FinishAppConnect(Conn &c) {
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(c.plain_fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err == EINPROGRESS || err == EALREADY) return;
  if (err != 0) {
    Close(c, true, "app_connect:" + ErrnoName(err));
    return;
  }
  StartRelay(c);
}

// Opens a non-blocking TCP socket and starts connecting. Returns the fd, or -1 with *err.
int OpenAndConnect(const Address &addr, bool *in_progress, int *err) {
  *in_progress = false;
  int fd = socket(addr.storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *err = errno;
    return -1;
  }
  SetNoDelay(fd);
  int r;
  do {
    r = connect(fd, reinterpret_cast<const sockaddr *>(&addr.storage), addr.len);
  } while (r != 0 && errno == EINTR);
  if (r != 0) {
    if (errno == EINPROGRESS) {
      *in_progress = true;
    } else {
      *err = errno;
      close(fd);
      return -1;
    }
  }
  return fd;
}

}  // namespace

void ConnStart(Conn &c, bool has_addr, const Address &addr) {
  if (c.server) {
    c.phase = Conn::kAwaitingBytes;
    UpdateInterest(c);
    return;
  }
  SSL_set_app_data(c.ssl, &c);
  SSL_set_connect_state(c.ssl);
  if (!has_addr) {
    FailHandshake(c, "EINVAL");
    return;
  }
  bool in_progress = false;
  int err = 0;
  c.tls_fd = OpenAndConnect(addr, &in_progress, &err);
  if (c.tls_fd < 0) {
    FailHandshake(c, ErrnoName(err));
    return;
  }
  if (in_progress) {
    c.phase = Conn::kTcpConnecting;
    UpdateInterest(c);
    return;
  }
  BeginHandshake(c);
}

void ConnOnEvent(Conn &c, bool tls_side, uint32_t events) {
  bool readable = (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0;
  bool writable = (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0;
  if (tls_side) {
    c.tls_in = c.tls_in || readable;
    c.tls_out = c.tls_out || writable;
  } else {
    c.plain_in = c.plain_in || readable;
    c.plain_out = c.plain_out || writable;
  }
  switch (c.phase) {
    case Conn::kAwaitingBytes:
      if (tls_side) FirstBytes(c);
      break;
    case Conn::kTcpConnecting:
      if (tls_side) FinishTcpConnect(c);
      break;
    case Conn::kHandshaking:
      if (tls_side) Handshake(c);
      break;
    case Conn::kAwaitVerdict:
      UpdateInterest(c);
      break;
    case Conn::kAppConnecting:
      if (!tls_side) FinishAppConnect(c);
      break;
    case Conn::kRelaying:
      Relay(c);
      break;
  }
}

void ConnAllow(Conn &c, bool has_addr, const Address &addr) {
  if (c.phase != Conn::kAwaitVerdict) return;
  if (!c.server) {
    StartRelay(c);
    return;
  }
  if (!has_addr) {
    Close(c, true, "app_connect:EINVAL");
    return;
  }
  bool in_progress = false;
  int err = 0;
  c.plain_fd = OpenAndConnect(addr, &in_progress, &err);
  if (c.plain_fd < 0) {
    Close(c, true, "app_connect:" + ErrnoName(err));
    return;
  }
  if (in_progress) {
    c.phase = Conn::kAppConnecting;
    UpdateInterest(c);
    return;
  }
  StartRelay(c);
}

void ConnResume(Conn &c) {
  if (c.phase == Conn::kRelaying) Relay(c);
}

int ConnOnNewSession(SSL *ssl, SSL_SESSION *session) {
  Conn *c = static_cast<Conn *>(SSL_get_app_data(ssl));
  if (c == nullptr) return 0;
  int len = i2d_SSL_SESSION(session, nullptr);
  if (len <= 0) return 0;
  std::string der(static_cast<size_t>(len), '\0');
  unsigned char *p = reinterpret_cast<unsigned char *>(&der[0]);
  if (i2d_SSL_SESSION(session, &p) != len) return 0;
  if (!c->handshake_reported) {
    c->early_sessions.push_back(std::move(der));
    return 0;
  }
  Event *ev = new Event();
  ev->kind = Event::kSession;
  ev->id = c->id;
  ev->session.swap(der);
  c->engine->Emit(ev);
  return 0;  // we keep no reference to the session
}

void ConnCounters(const Conn &c, Event *ev) {
  ev->plain_in = c.plain_in_bytes;
  ev->plain_out = c.plain_out_bytes;
  ev->tls_in = TlsBytes(c.ssl, true);
  ev->tls_out = TlsBytes(c.ssl, false);
}

}  // namespace trellis_relay
