// The relay stage of a connection: TLS to plaintext and back, in bursts so
// one busy connection cannot starve the loop, and the half-close of each
// direction (close_notify, then the FIN) once its side is done.
#include <errno.h>
#include <openssl/err.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn_stages.h"
#include "errors.h"
#include "ssl_facts.h"

namespace trellis_relay {
namespace {

// Work done for one connection before the loop serves the others (x 64 KiB).
constexpr int kBurst = 16;

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

}  // namespace

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

}  // namespace trellis_relay
