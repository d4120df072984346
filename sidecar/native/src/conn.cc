// A relayed connection's entry points (conn.h) and what they share: epoll
// interest, closing, and the TCP connects to the peer (outbound) and to the
// app (inbound). The handshake stage is in handshake.cc, relaying in pump.cc.
#include "conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn_stages.h"
#include "errors.h"
#include "ssl_facts.h"

namespace trellis_relay {
namespace {

void SetNoDelay(int fd) {
  int one = 1;
  // Best effort: a failure only costs latency.
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
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

void Close(Conn &c, bool has_error, const std::string &error) {
  c.engine->Destroy(&c, has_error, error);
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
