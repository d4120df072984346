// One relayed connection: a TLS socket, a plaintext socket, and the state
// machine between them (connect, handshake, verdict, app connect, relay,
// half-close). Loop thread only.
#pragma once
#include <openssl/ssl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "engine.h"

namespace trellis_relay {

/** Bytes owed to one side; holds memory only while something is owed. */
struct Pending {
  std::vector<unsigned char> bytes;
  size_t offset = 0;
  bool empty() const { return offset >= bytes.size(); }
  const unsigned char *data() const { return bytes.data() + offset; }
  size_t size() const { return bytes.size() - offset; }
  void Assign(const unsigned char *p, size_t n) { bytes.assign(p, p + n); offset = 0; }
  void Consume(size_t n) {
    offset += n;
    if (offset >= bytes.size()) std::vector<unsigned char>().swap(bytes), offset = 0;
  }
};

struct Conn {
  // kAwaitingBytes: an accepted connection before the peer's first byte. It
  // holds a descriptor, this struct and a context reference, nothing more:
  // no SSL object and no handshake buffers (~40 KiB together), so that idle
  // connections cost next to nothing.
  enum Phase { kAwaitingBytes, kTcpConnecting, kHandshaking, kAwaitVerdict, kAppConnecting, kRelaying };

  Engine *engine = nullptr;
  int64_t id = 0;
  bool server = false;
  Phase phase = kHandshaking;
  int tls_fd = -1;
  int plain_fd = -1;
  SSL *ssl = nullptr;
  SSL_CTX *ctx = nullptr;  // kAwaitingBytes only: the reference the SSL will be made from

  // Registered epoll interest per fd (0 = not in the set, so a HUP on an fd
  // we are not using can never spin the loop).
  uint32_t tls_mask = 0;
  uint32_t plain_mask = 0;
  // Readiness hints: false after EAGAIN / WANT_*, true after an epoll report.
  bool tls_in = true, tls_out = true, plain_in = true, plain_out = true;
  bool again_queued = false;

  int hs_want = 0;  // SSL_ERROR_WANT_READ / _WRITE while handshaking

  // plain -> tls
  Pending to_tls;
  int to_tls_wait = 0;  // what the pending SSL_write is waiting for
  bool plain_eof = false;
  bool tls_write_closed = false;  // close_notify sent and SHUT_WR done
  int shutdown_wait = 0;

  // tls -> plain
  Pending to_plain;
  int ssl_read_wait = 0;  // SSL_ERROR_WANT_WRITE when SSL_read must write first
  bool tls_eof = false;
  bool plain_write_closed = false;

  uint64_t plain_in_bytes = 0, plain_out_bytes = 0;
  bool handshake_reported = false;
  std::vector<std::string> early_sessions;  // sessions seen before the handshake event
};

/** Starts a connection handed over by a command (accept or connect). */
void ConnStart(Conn &c, bool has_addr, const Address &addr);
/** Readiness reported by epoll for one of the connection's fds. */
void ConnOnEvent(Conn &c, bool tls_side, uint32_t events);
/** allow(): starts the app connect (inbound) or the relay (outbound). */
void ConnAllow(Conn &c, bool has_addr, const Address &addr);
/** Continues relaying after the loop yielded to other connections. */
void ConnResume(Conn &c);
/** Fills the byte counters of a 'closed' event (before the SSL is freed). */
void ConnCounters(const Conn &c, Event *ev);
/** Session callback installed on client contexts. */
int ConnOnNewSession(SSL *ssl, SSL_SESSION *session);

}  // namespace trellis_relay
