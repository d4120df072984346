#include "engine.h"

#include <errno.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "conn.h"
#include "errors.h"

namespace trellis_relay {
namespace {

constexpr size_t kScratchSize = 64 * 1024;
constexpr int kMaxEvents = 256;
constexpr uint64_t kWakeTag = 0;
// After connections closed, how long the loop must sit idle before it hands
// freed memory back to the kernel, and how many closes force it anyway.
constexpr int kTrimIdleMs = 1000;
constexpr int64_t kTrimEvery = 8192;

// glibc keeps what a burst of connections freed (SSL objects, handshake and
// record buffers, in this thread's arena and the JS thread's) as free heap:
// resident forever unless trimmed. malloc_trim walks every arena, so it runs
// only when the loop is idle or after many closes, never per connection.
void TrimHeap() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

uint64_t Tag(int64_t id, bool tls_side) { return (static_cast<uint64_t>(id) << 1) | (tls_side ? 1 : 0); }

}  // namespace

Engine::Engine(EventSink sink, void *sink_data) : sink_(sink), sink_data_(sink_data), scratch_(kScratchSize) {}

Engine::~Engine() {
  Stop();
  if (epfd_ >= 0) close(epfd_);
  if (evfd_ >= 0) close(evfd_);
}

bool Engine::Start(std::string *error) {
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) {
    *error = "epoll_create1: " + ErrnoName(errno);
    return false;
  }
  evfd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (evfd_ < 0) {
    *error = "eventfd: " + ErrnoName(errno);
    return false;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeTag;
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, evfd_, &ev) != 0) {
    *error = "epoll_ctl: " + ErrnoName(errno);
    return false;
  }
  // pthread rather than std::thread: the addon is built without exceptions,
  // so a std::thread the kernel refuses would abort the process; this way a
  // refusal is an error the sidecar answers by using the Node path.
  int rc = pthread_create(&thread_, nullptr, &Engine::RunThread, this);
  if (rc != 0) {
    *error = "pthread_create: " + ErrnoName(rc);
    return false;
  }
  started_ = true;
  return true;
}

void *Engine::RunThread(void *self) {
  static_cast<Engine *>(self)->Run();
  return nullptr;
}

bool Engine::Post(Command cmd) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_.load()) return false;
    if (cmd.kind == Command::kStop) stopping_.store(true);
    queue_.push_back(cmd);
  }
  uint64_t one = 1;
  // EAGAIN means the counter is already non-zero: the loop is being woken anyway.
  ssize_t w;
  do {
    w = write(evfd_, &one, sizeof(one));
  } while (w < 0 && errno == EINTR);
  return true;
}

void Engine::Stop() {
  if (joined_ || !started_) return;
  Command cmd;
  cmd.kind = Command::kStop;
  Post(cmd);
  pthread_join(thread_, nullptr);
  joined_ = true;
}

void Engine::Emit(Event *ev) { sink_(sink_data_, ev); }

bool Engine::Watch(Conn &c, bool tls_side, uint32_t mask) {
  uint32_t &current = tls_side ? c.tls_mask : c.plain_mask;
  int fd = tls_side ? c.tls_fd : c.plain_fd;
  if (mask == current) return true;
  if (fd < 0) return mask == 0;
  epoll_event ev{};
  ev.events = mask;
  ev.data.u64 = Tag(c.id, tls_side);
  int op = current == 0 ? EPOLL_CTL_ADD : (mask == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD);
  if (epoll_ctl(epfd_, op, fd, &ev) != 0) return false;
  current = mask;
  return true;
}

void Engine::QueueAgain(Conn &c) {
  if (c.again_queued) return;
  c.again_queued = true;
  again_.push_back(c.id);
}

void Engine::Destroy(Conn *c, bool has_error, const std::string &error) {
  // Explicit removal: a dup'd fd whose twin is still open elsewhere would
  // otherwise stay in the epoll set after close().
  Watch(*c, true, 0);
  Watch(*c, false, 0);
  Event *ev = new Event();
  ev->kind = Event::kClosed;
  ev->id = c->id;
  ev->has_error = has_error;
  ev->error = error;
  ConnCounters(*c, ev);
  if (c->tls_fd >= 0) close(c->tls_fd);
  if (c->plain_fd >= 0) close(c->plain_fd);
  if (c->ssl != nullptr) SSL_free(c->ssl);
  if (c->ctx != nullptr) SSL_CTX_free(c->ctx);
  conns_.erase(c->id);
  ++closed_since_trim_;
  delete c;
  --open_;
  Emit(ev);
}

void Engine::Handle(Command &cmd) {
  switch (cmd.kind) {
    case Command::kAccept:
    case Command::kConnect: {
      Conn *c = new Conn();
      c->engine = this;
      c->id = cmd.id;
      c->ssl = cmd.ssl;
      c->ctx = cmd.ctx;
      c->server = cmd.kind == Command::kAccept;
      if (c->server) c->tls_fd = cmd.fd; else c->plain_fd = cmd.fd;
      if (!cmd.first_bytes.empty()) {
        // Owed to the TLS side like any bytes read from the app; nothing is written before the relay starts.
        c->to_tls.Assign(reinterpret_cast<const unsigned char *>(cmd.first_bytes.data()), cmd.first_bytes.size());
        c->plain_in_bytes = cmd.first_bytes.size();
      }
      conns_[c->id] = c;
      ConnStart(*c, cmd.has_addr, cmd.addr);
      break;
    }
    case Command::kAllow: {
      auto it = conns_.find(cmd.id);
      if (it != conns_.end()) ConnAllow(*it->second, cmd.has_addr, cmd.addr);
      break;
    }
    case Command::kClose: {
      auto it = conns_.find(cmd.id);
      if (it != conns_.end()) Destroy(it->second, true, "closed");
      break;
    }
    case Command::kStop:
      break;
  }
}

void Engine::DrainCommands(bool *stop) {
  uint64_t count;
  while (read(evfd_, &count, sizeof(count)) < 0 && errno == EINTR) {
  }
  std::deque<Command> batch;
  {
    std::lock_guard<std::mutex> lock(mu_);
    batch.swap(queue_);
  }
  for (Command &cmd : batch) {
    if (cmd.kind == Command::kStop) *stop = true;
    Handle(cmd);
  }
}

void Engine::CloseAll() {
  while (!conns_.empty()) Destroy(conns_.begin()->second, true, "closed");
}

void Engine::Run() {
  epoll_event events[kMaxEvents];
  bool stop = false;
  while (!stop) {
    if (closed_since_trim_ >= kTrimEvery) {
      TrimHeap();
      closed_since_trim_ = 0;
    }
    int wait_ms = !again_.empty() ? 0 : (closed_since_trim_ > 0 ? kTrimIdleMs : -1);
    int n = epoll_wait(epfd_, events, kMaxEvents, wait_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;  // the set is unusable: close everything below rather than spin
    }
    if (n == 0 && wait_ms == kTrimIdleMs) {
      TrimHeap();
      closed_since_trim_ = 0;
      continue;
    }
    for (int i = 0; i < n; i++) {
      uint64_t tag = events[i].data.u64;
      if (tag == kWakeTag) {
        DrainCommands(&stop);
        continue;
      }
      auto it = conns_.find(static_cast<int64_t>(tag >> 1));
      // Gone already (closed earlier in this batch): its event is stale.
      if (it == conns_.end()) continue;
      ConnOnEvent(*it->second, (tag & 1) != 0, events[i].events);
    }
    if (!again_.empty()) {
      std::vector<int64_t> ids;
      ids.swap(again_);
      for (int64_t id : ids) {
        auto it = conns_.find(id);
        if (it == conns_.end()) continue;
        it->second->again_queued = false;
        ConnResume(*it->second);
      }
    }
  }
  CloseAll();
  // Commands can no longer arrive (stopping_ is set before kStop is queued),
  // but a broken epoll set can end the loop early: release what was queued.
  std::deque<Command> rest;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_.store(true);
    rest.swap(queue_);
  }
  for (Command &cmd : rest) {
    if (cmd.kind == Command::kAccept || cmd.kind == Command::kConnect) Handle(cmd);
  }
  CloseAll();
}

}  // namespace trellis_relay
