// The relay engine: one thread, one epoll set, connections keyed by id.
// The JS thread talks to it only through the command queue (mutex + eventfd)
// and hears from it only through the event sink; nothing else is shared.
#pragma once
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <pthread.h>
#include <unordered_map>
#include <vector>

namespace trellis_relay {

/** What the loop reports; converted to a JS object on the JS thread. */
struct Event {
  enum Kind { kHandshake, kSession, kClosed } kind = kHandshake;
  int64_t id = 0;
  bool ok = false;
  std::vector<std::string> chain;  // DER, leaf first
  long verify_error = 0;
  bool resumed = false;
  std::string protocol;
  std::string group;  // the negotiated key-exchange group (OpenSSL's name)
  std::string error;  // handshake failure, or closed error
  bool has_error = false;
  std::string session;  // DER of the SSL_SESSION
  uint64_t plain_in = 0, plain_out = 0, tls_in = 0, tls_out = 0;
};

/** Delivers events to JS; called on the loop thread, must not block. */
using EventSink = void (*)(void *data, Event *ev);

struct Address {
  sockaddr_storage storage{};
  socklen_t len = 0;
};

struct Command {
  enum Kind { kAccept, kConnect, kAllow, kClose, kStop } kind = kClose;
  int64_t id = 0;
  int fd = -1;           // accept: the TLS socket; connect: the plain socket
  SSL *ssl = nullptr;    // connect: made on the JS thread (it may carry a session to offer)
  SSL_CTX *ctx = nullptr;  // accept: one reference, the SSL is made when the peer's first bytes arrive
  bool has_addr = false;
  Address addr;          // connect: TLS peer; allow: the app
  std::string first_bytes;  // connect: app bytes JS already read, sent first once relaying
};

struct Conn;

class Engine {
 public:
  Engine(EventSink sink, void *sink_data);
  ~Engine();

  /** Creates the epoll set and starts the thread. False (with *error) if the kernel refused. */
  bool Start(std::string *error);
  /** Queues a command and wakes the loop. False once stopping has begun. */
  bool Post(Command cmd);
  /** Closes every connection, joins the thread. Idempotent; JS thread only. */
  void Stop();
  bool stopped() const { return stopping_.load(); }
  int64_t NextId() { return ++last_id_; }
  /** Connections handed to the engine and not yet closed. */
  int64_t size() const { return open_.load(); }
  void CountOpened() { ++open_; }
  void CountClosedUnstarted() { --open_; }

  // Used by Conn (loop thread only).
  void Emit(Event *ev);
  bool Watch(Conn &c, bool tls_side, uint32_t mask);
  unsigned char *scratch() { return scratch_.data(); }
  size_t scratch_size() const { return scratch_.size(); }
  void Destroy(Conn *c, bool has_error, const std::string &error);
  /** Serve this connection again after the others (it stopped with work left). */
  void QueueAgain(Conn &c);

 private:
  void Run();
  void DrainCommands(bool *stop);
  void Handle(Command &cmd);
  void CloseAll();

  EventSink sink_;
  void *sink_data_;
  int epfd_ = -1;
  int evfd_ = -1;
  pthread_t thread_{};
  bool started_ = false;
  static void *RunThread(void *self);
  std::mutex mu_;
  std::deque<Command> queue_;
  std::atomic<bool> stopping_{false};
  bool joined_ = false;
  std::atomic<int64_t> last_id_{0};
  std::atomic<int64_t> open_{0};
  std::unordered_map<int64_t, Conn *> conns_;
  std::vector<unsigned char> scratch_;
  std::vector<int64_t> again_;
  // Connections closed since memory was last handed back to the kernel
  // (see Run: a burst of handshakes leaves freed heap the allocator keeps).
  int64_t closed_since_trim_ = 0;
};

}  // namespace trellis_relay
