// libFuzzer target for the relay's handling of TLS bytes: the real engine
// (loop thread, epoll, the connection state machine of conn.cc, handshake.cc and pump.cc, and the
// contexts of tls_context.cc; only the N-API glue of relay.cc is left out)
// serving one inbound connection per input over a socketpair, as
// acceptTls does, with a real TLS client on the other end.
//
// Byte 0, bit 0 picks the mode:
//  - raw: the rest is what the "client" sends (a ClientHello, or anything),
//    in chunks; then it half-closes. Exercises the first-bytes wait, the
//    handshake and its failure paths.
//  - session: a real handshake, allow() to an app socket, then a program of
//    operations read from the input (op byte, length byte, data): client
//    SSL_write, raw bytes injected into the TLS stream, app writes, client
//    close_notify, app half-close, draining. Exercises record reading and
//    gathering, partial writes, half-closes and errors mid-relay.
//
// Beyond "no crash, no sanitizer report, no leak" it checks what users rely
// on: every connection ends with exactly one 'closed' event (a hang aborts),
// and when no raw bytes were injected, the bytes each side sent arrive
// intact and in order on the other.
//
// Seeds: with TRELLIS_FUZZ_SEEDS_DIR set, initialisation writes a captured
// ClientHello and a few session programs there. Keys and certificates are
// made at start-up; nothing is committed.
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "../src/engine.h"
#include "../src/tls_context.h"

using trellis_relay::Address;
using trellis_relay::Command;
using trellis_relay::ContextOptions;
using trellis_relay::Engine;
using trellis_relay::Event;

namespace {

// Generous: an ASan build on a busy machine is slow, and a real hang still shows (libFuzzer's -timeout is longer).
constexpr int kWaitMs = 15000;

// ---- what the engine reports -------------------------------------------

std::mutex mu;
std::condition_variable cv;
std::vector<Event *> events;

void Sink(void *, Event *ev) {
  std::lock_guard<std::mutex> lock(mu);
  events.push_back(ev);
  cv.notify_all();
}

// The next event of `kind` for `id` (others of that id are dropped), or null after kWaitMs.
Event *WaitFor(int64_t id, Event::Kind kind) {
  std::unique_lock<std::mutex> lock(mu);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kWaitMs);
  for (;;) {
    for (size_t i = 0; i < events.size(); i++) {
      if (events[i]->id != id) continue;
      Event *ev = events[i];
      events.erase(events.begin() + static_cast<long>(i));
      if (ev->kind == kind) return ev;
      delete ev;
      i--;
    }
    if (cv.wait_until(lock, deadline) == std::cv_status::timeout) return nullptr;
  }
}

// ---- fixtures made at start-up -------------------------------------------

Engine *engine;
SSL_CTX *server_ctx;
SSL_CTX *client_ctx;
int app_listener = -1;
Address app_addr;

std::string Pem(X509 *cert) {
  BIO *b = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(b, cert);
  char *p;
  long n = BIO_get_mem_data(b, &p);
  std::string out(p, static_cast<size_t>(n));
  BIO_free(b);
  return out;
}

std::string KeyPem(EVP_PKEY *key) {
  BIO *b = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr);
  char *p;
  long n = BIO_get_mem_data(b, &p);
  std::string out(p, static_cast<size_t>(n));
  BIO_free(b);
  return out;
}

// A self-signed P-256 certificate for `cn`.
X509 *SelfSigned(EVP_PKEY *key, const char *cn) {
  X509 *cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
  X509_set_pubkey(cert, key);
  X509_NAME *name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char *>(cn), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  if (X509_sign(cert, key, EVP_sha256()) <= 0) abort();
  return cert;
}

void SetNonBlocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

void MakeFixtures() {
  EVP_PKEY *server_key = EVP_EC_gen("P-256");
  EVP_PKEY *client_key = EVP_EC_gen("P-256");
  if (!server_key || !client_key) abort();
  X509 *server_cert = SelfSigned(server_key, "relay");
  X509 *client_cert = SelfSigned(client_key, "client");
  ContextOptions opts;
  opts.server = true;
  opts.chain_pem = Pem(server_cert);
  opts.key_pem = KeyPem(server_key);
  opts.ca_pem = Pem(client_cert);
  std::string error;
  server_ctx = trellis_relay::BuildContext(opts, nullptr, &error);
  if (!server_ctx) {
    fprintf(stderr, "BuildContext: %s\n", error.c_str());
    abort();
  }
  client_ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, nullptr);
  SSL_CTX_set_session_cache_mode(client_ctx, SSL_SESS_CACHE_OFF);
  if (SSL_CTX_use_certificate(client_ctx, client_cert) != 1 || SSL_CTX_use_PrivateKey(client_ctx, client_key) != 1) abort();
  X509_free(server_cert);
  X509_free(client_cert);
  EVP_PKEY_free(server_key);
  EVP_PKEY_free(client_key);

  app_listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in *sin = reinterpret_cast<sockaddr_in *>(&app_addr.storage);
  sin->sin_family = AF_INET;
  sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  app_addr.len = sizeof(sockaddr_in);
  if (bind(app_listener, reinterpret_cast<sockaddr *>(sin), app_addr.len) != 0 || listen(app_listener, 16) != 0) abort();
  getsockname(app_listener, reinterpret_cast<sockaddr *>(sin), &app_addr.len);

  engine = new Engine(Sink, nullptr);
  std::string why;
  if (!engine->Start(&why)) {
    fprintf(stderr, "engine: %s\n", why.c_str());
    abort();
  }
}

// ---- one connection --------------------------------------------------------

// Hands `fd` to the engine as acceptTls does; returns the id.
int64_t Accept(int fd) {
  Command cmd;
  cmd.kind = Command::kAccept;
  cmd.id = engine->NextId();
  cmd.fd = fd;
  SSL_CTX_up_ref(server_ctx);
  cmd.ctx = server_ctx;
  engine->CountOpened();
  if (!engine->Post(cmd)) abort();
  return cmd.id;
}

void Post(Command::Kind kind, int64_t id, const Address *addr) {
  Command cmd;
  cmd.kind = kind;
  cmd.id = id;
  if (addr) {
    cmd.has_addr = true;
    cmd.addr = *addr;
  }
  engine->Post(cmd);
}

bool WaitFd(int fd, short what) {
  pollfd p{fd, what, 0};
  return poll(&p, 1, kWaitMs) > 0;
}

// Reads what `fd` has now (plain socket) into `out`; false at EOF or error.
bool DrainPlain(int fd, std::string *out) {
  char buf[16384];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      out->append(buf, static_cast<size_t>(n));
      continue;
    }
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
  }
}

// SSL_read whatever is there into `out`; false once the TLS side ended.
bool DrainTls(SSL *ssl, std::string *out) {
  char buf[16384];
  for (;;) {
    int n = SSL_read(ssl, buf, sizeof buf);
    if (n > 0) {
      out->append(buf, static_cast<size_t>(n));
      continue;
    }
    int err = SSL_get_error(ssl, n);
    ERR_clear_error();
    return err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE;
  }
}

void SendAll(int fd, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w > 0) {
      p += w;
      n -= static_cast<size_t>(w);
    } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
      WaitFd(fd, POLLOUT);
    } else {
      return;  // the relay closed: what follows is refused, which is fine
    }
  }
}

void ExpectClosed(int64_t id) {
  Event *ev = WaitFor(id, Event::kClosed);
  if (!ev) {
    fprintf(stderr, "connection %lld never reported 'closed'\n", static_cast<long long>(id));
    abort();
  }
  delete ev;
}

void RawMode(const uint8_t *data, size_t size) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) abort();
  SetNonBlocking(sv[0]);
  SetNonBlocking(sv[1]);
  int64_t id = Accept(sv[1]);
  // Chunks of 1..64 bytes, sizes taken from the data itself, so records arrive split.
  size_t at = 0;
  while (at < size) {
    size_t n = 1 + data[at] % 64;
    if (n > size - at) n = size - at;
    SendAll(sv[0], data + at, n);
    at += n;
  }
  shutdown(sv[0], SHUT_WR);
  std::string ignored;
  for (;;) {
    if (!WaitFd(sv[0], POLLIN)) break;
    if (!DrainPlain(sv[0], &ignored)) break;
  }
  ExpectClosed(id);
  close(sv[0]);
}

void SessionMode(const uint8_t *data, size_t size) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) abort();
  SetNonBlocking(sv[0]);
  SetNonBlocking(sv[1]);
  int64_t id = Accept(sv[1]);
  SSL *ssl = SSL_new(client_ctx);
  SSL_set_fd(ssl, sv[0]);
  SSL_set_connect_state(ssl);
  for (;;) {
    errno = 0;
    int r = SSL_do_handshake(ssl);
    if (r == 1) break;
    int err = SSL_get_error(ssl, r);
    int saved = errno;
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      if (WaitFd(sv[0], err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT)) continue;
      fprintf(stderr, "the relay did not answer the client's handshake within %d ms\n", kWaitMs);
      abort();
    }
    char reason[256];
    ERR_error_string_n(ERR_peek_error(), reason, sizeof reason);
    Event *ev = WaitFor(id, Event::kHandshake);
    fprintf(stderr, "the client handshake with the relay failed: SSL error %d, errno %d, %s; relay: %s\n", err, saved, reason,
            ev ? (ev->ok ? "handshake ok" : ev->error.c_str()) : "no handshake event");
    abort();
  }
  Event *hs = WaitFor(id, Event::kHandshake);
  if (!hs || !hs->ok || hs->chain.empty()) {
    fprintf(stderr, "no successful handshake event with the client's certificate\n");
    abort();
  }
  delete hs;
  Post(Command::kAllow, id, &app_addr);
  if (!WaitFd(app_listener, POLLIN)) {
    fprintf(stderr, "allow() never connected to the app\n");
    abort();
  }
  int app = accept4(app_listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (app < 0) abort();

  std::string to_app, at_app, to_client, at_client;
  bool injected = false, client_closed = false, app_closed = false;
  size_t at = 0;
  while (at + 2 <= size) {
    uint8_t op = data[at] % 6;
    size_t n = data[at + 1];
    at += 2;
    if (n > size - at) n = size - at;
    const uint8_t *p = data + at;
    at += n;
    switch (op) {
      case 0:  // client data, as records
        if (client_closed || n == 0) break;
        for (size_t done = 0; done < n;) {
          int w = SSL_write(ssl, p + done, static_cast<int>(n - done));
          if (w > 0) {
            done += static_cast<size_t>(w);
            continue;
          }
          int err = SSL_get_error(ssl, w);
          ERR_clear_error();
          if (err == SSL_ERROR_WANT_WRITE && WaitFd(sv[0], POLLOUT)) continue;
          if (err == SSL_ERROR_WANT_READ) {
            DrainTls(ssl, &at_client);
            continue;
          }
          client_closed = true;
          break;
        }
        if (!client_closed) to_app.append(reinterpret_cast<const char *>(p), n);
        break;
      case 1:  // bytes that are not (or no longer) valid records
        if (n == 0) break;
        injected = true;
        SendAll(sv[0], p, n);
        break;
      case 2:  // app data
        if (app_closed || n == 0) break;
        SendAll(app, p, n);
        to_client.append(reinterpret_cast<const char *>(p), n);
        break;
      case 3:  // close_notify, then FIN
        if (!client_closed) {
          SSL_shutdown(ssl);
          ERR_clear_error();
          shutdown(sv[0], SHUT_WR);
          client_closed = true;
        }
        break;
      case 4:  // the app half-closes
        if (!app_closed) {
          shutdown(app, SHUT_WR);
          app_closed = true;
        }
        break;
      case 5:
        DrainTls(ssl, &at_client);
        DrainPlain(app, &at_app);
        break;
    }
  }
  // Both ends finish; then everything in flight is read out.
  if (!client_closed) {
    SSL_shutdown(ssl);
    ERR_clear_error();
    shutdown(sv[0], SHUT_WR);
  }
  if (!app_closed) shutdown(app, SHUT_WR);
  bool tls_open = true, app_open = true;
  while (tls_open || app_open) {
    pollfd fds[2] = {{sv[0], static_cast<short>(tls_open ? POLLIN : 0), 0}, {app, static_cast<short>(app_open ? POLLIN : 0), 0}};
    if (poll(fds, 2, kWaitMs) <= 0) {
      if (!injected) {
        fprintf(stderr, "the relay stopped moving bytes before both sides ended\n");
        abort();
      }
      break;
    }
    if (tls_open && fds[0].revents) tls_open = DrainTls(ssl, &at_client);
    if (app_open && fds[1].revents) app_open = DrainPlain(app, &at_app);
  }
  if (!injected && (at_app != to_app || at_client != to_client)) {
    fprintf(stderr, "bytes lost or changed: app got %zu of %zu, client got %zu of %zu\n", at_app.size(), to_app.size(), at_client.size(), to_client.size());
    abort();
  }
  close(app);
  SSL_free(ssl);
  close(sv[0]);
  ExpectClosed(id);
}

// ---- seeds -------------------------------------------------------------------

void WriteSeed(const char *dir, const char *name, const std::string &bytes) {
  std::string path = std::string(dir) + "/" + name;
  FILE *f = fopen(path.c_str(), "wb");
  if (!f) return;
  fwrite(bytes.data(), 1, bytes.size(), f);
  fclose(f);
}

// A real ClientHello (the first flight of a client), captured through memory BIOs.
std::string ClientHello() {
  SSL *ssl = SSL_new(client_ctx);
  BIO *rbio = BIO_new(BIO_s_mem());
  BIO *wbio = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl, rbio, wbio);
  SSL_set_connect_state(ssl);
  SSL_do_handshake(ssl);
  ERR_clear_error();
  char *p;
  long n = BIO_get_mem_data(wbio, &p);
  std::string out(p, static_cast<size_t>(n));
  SSL_free(ssl);
  return out;
}

std::string Op(uint8_t op, const std::string &data) { return std::string(1, static_cast<char>(op)) + std::string(1, static_cast<char>(data.size())) + data; }

void WriteSeeds(const char *dir) {
  std::string hello = ClientHello();
  WriteSeed(dir, "raw-client-hello", std::string(1, '\0') + hello);
  WriteSeed(dir, "raw-truncated-record", std::string("\0\x16\x03\x01\x00\xff\x01", 7));
  WriteSeed(dir, "session-both-ways", std::string(1, '\1') + Op(0, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") + Op(2, "HTTP/1.1 200 OK\r\n\r\nok") + Op(5, "") + Op(3, "") + Op(2, "late reply"));
  WriteSeed(dir, "session-app-half-close", std::string(1, '\1') + Op(2, "server first") + Op(4, "") + Op(0, "still talking") + Op(5, ""));
  WriteSeed(dir, "session-garbage-mid-stream", std::string(1, '\1') + Op(0, "hello") + Op(1, std::string("\x17\x03\x03\x00\x20", 5) + std::string(32, 'x')) + Op(0, "after"));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  // The client's SSL_write goes through write(): a relay that already closed must not kill the fuzzer.
  signal(SIGPIPE, SIG_IGN);
  MakeFixtures();
  const char *dir = getenv("TRELLIS_FUZZ_SEEDS_DIR");
  if (dir && *dir) WriteSeeds(dir);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  if ((data[0] & 1) == 0) RawMode(data + 1, size - 1);
  else SessionMode(data + 1, size - 1);
  return 0;
}
