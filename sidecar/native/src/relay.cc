// The N-API surface of @trellis/tls-relay: the Relay class, RelayContext
// objects, argument checking, and events turned into JS objects. Everything
// here runs on the JS thread; the engine runs on its own.
#define NAPI_VERSION 8
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <node_api.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include <cmath>
#include <string>

#include "conn.h"
#include "engine.h"
#include "errors.h"
#include "tls_context.h"

namespace trellis_relay {
namespace {

struct ContextHolder {
  SSL_CTX *ctx = nullptr;
  bool server = false;
};

struct RelayWrap {
  Engine *engine = nullptr;
  napi_threadsafe_function tsfn = nullptr;
  napi_env env = nullptr;
  bool stopped = false;
  bool hook_ran = false;
};

// A pending exception is left for JS; callers return nullptr right after.
napi_value ThrowType(napi_env env, const std::string &msg) {
  napi_throw_type_error(env, nullptr, msg.c_str());
  return nullptr;
}

napi_value ThrowPlain(napi_env env, const std::string &msg) {
  napi_throw_error(env, nullptr, msg.c_str());
  return nullptr;
}

bool GetInteger(napi_env env, napi_value v, double min, double max, int64_t *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) return false;
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok) return false;
  if (!std::isfinite(d) || std::floor(d) != d || d < min || d > max) return false;
  *out = static_cast<int64_t>(d);
  return true;
}

bool GetString(napi_env env, napi_value v, std::string *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) return false;
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, nullptr, 0, &len) != napi_ok) return false;
  out->resize(len + 1);
  size_t copied = 0;
  if (napi_get_value_string_utf8(env, v, &(*out)[0], len + 1, &copied) != napi_ok) return false;
  out->resize(copied);  // shrinking never reallocates, so a key is never left in a freed block
  return true;
}

bool ParseAddress(const std::string &host, int64_t port, Address *addr) {
  std::string h = host;
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  *addr = Address();
  sockaddr_in *v4 = reinterpret_cast<sockaddr_in *>(&addr->storage);
  if (inet_pton(AF_INET, h.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    addr->len = sizeof(sockaddr_in);
    return true;
  }
  *addr = Address();
  sockaddr_in6 *v6 = reinterpret_cast<sockaddr_in6 *>(&addr->storage);
  if (inet_pton(AF_INET6, h.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    addr->len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

RelayWrap *ThisRelay(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  napi_value self;
  if (napi_get_cb_info(env, info, argc, argv, &self, nullptr) != napi_ok) return nullptr;
  void *p = nullptr;
  if (napi_unwrap(env, self, &p) != napi_ok || p == nullptr) {
    ThrowType(env, "not a Relay");
    return nullptr;
  }
  return static_cast<RelayWrap *>(p);
}

// ---- events -------------------------------------------------------------

void SetNamed(napi_env env, napi_value obj, const char *name, napi_value v) { napi_set_named_property(env, obj, name, v); }

napi_value Str(napi_env env, const std::string &s) {
  napi_value v;
  napi_create_string_utf8(env, s.data(), s.size(), &v);
  return v;
}

napi_value Num(napi_env env, double d) {
  napi_value v;
  napi_create_double(env, d, &v);
  return v;
}

napi_value Bool(napi_env env, bool b) {
  napi_value v;
  napi_get_boolean(env, b, &v);
  return v;
}

napi_value Buf(napi_env env, const std::string &bytes) {
  napi_value v;
  void *unused;
  napi_create_buffer_copy(env, bytes.size(), bytes.data(), &unused, &v);
  return v;
}

napi_value EventObject(napi_env env, const Event &ev) {
  napi_value obj;
  napi_create_object(env, &obj);
  switch (ev.kind) {
    case Event::kHandshake:
      SetNamed(env, obj, "kind", Str(env, "handshake"));
      SetNamed(env, obj, "id", Num(env, static_cast<double>(ev.id)));
      SetNamed(env, obj, "ok", Bool(env, ev.ok));
      if (ev.ok) {
        napi_value chain;
        napi_create_array_with_length(env, ev.chain.size(), &chain);
        for (size_t i = 0; i < ev.chain.size(); i++) napi_set_element(env, chain, static_cast<uint32_t>(i), Buf(env, ev.chain[i]));
        SetNamed(env, obj, "chain", chain);
        SetNamed(env, obj, "verifyError", Num(env, static_cast<double>(ev.verify_error)));
        SetNamed(env, obj, "resumed", Bool(env, ev.resumed));
        SetNamed(env, obj, "protocol", Str(env, ev.protocol));
        SetNamed(env, obj, "group", Str(env, ev.group));
      } else {
        SetNamed(env, obj, "error", Str(env, ev.error));
        SetNamed(env, obj, "verifyError", Num(env, static_cast<double>(ev.verify_error)));
      }
      break;
    case Event::kSession:
      SetNamed(env, obj, "kind", Str(env, "session"));
      SetNamed(env, obj, "id", Num(env, static_cast<double>(ev.id)));
      SetNamed(env, obj, "session", Buf(env, ev.session));
      break;
    case Event::kClosed: {
      SetNamed(env, obj, "kind", Str(env, "closed"));
      SetNamed(env, obj, "id", Num(env, static_cast<double>(ev.id)));
      SetNamed(env, obj, "plainIn", Num(env, static_cast<double>(ev.plain_in)));
      SetNamed(env, obj, "plainOut", Num(env, static_cast<double>(ev.plain_out)));
      SetNamed(env, obj, "tlsIn", Num(env, static_cast<double>(ev.tls_in)));
      SetNamed(env, obj, "tlsOut", Num(env, static_cast<double>(ev.tls_out)));
      napi_value err;
      if (ev.has_error) err = Str(env, ev.error); else napi_get_null(env, &err);
      SetNamed(env, obj, "error", err);
      break;
    }
  }
  return obj;
}

void CallJs(napi_env env, napi_value js_cb, void *, void *data) {
  Event *ev = static_cast<Event *>(data);
  if (env != nullptr && js_cb != nullptr) {
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) == napi_ok) {
      napi_value obj = EventObject(env, *ev);
      napi_value undefined;
      napi_get_undefined(env, &undefined);
      napi_call_function(env, undefined, js_cb, 1, &obj, nullptr);
      // A throwing onEvent is an uncaught exception, as for any callback
      // (rather than node 20's default of warning and dropping it).
      bool pending = false;
      if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
        napi_value err;
        if (napi_get_and_clear_last_exception(env, &err) == napi_ok) napi_fatal_exception(env, err);
      }
      napi_close_handle_scope(env, scope);
    }
  }
  delete ev;
}

void Sink(void *data, Event *ev) {
  RelayWrap *w = static_cast<RelayWrap *>(data);
  if (napi_call_threadsafe_function(w->tsfn, ev, napi_tsfn_nonblocking) != napi_ok) delete ev;
}

// ---- lifecycle ----------------------------------------------------------

void StopRelay(RelayWrap *w) {
  if (w->stopped) return;
  w->stopped = true;
  w->engine->Stop();  // joins: no event can be queued after this
  napi_release_threadsafe_function(w->tsfn, napi_tsfn_release);
}

void CleanupHook(void *arg) {
  RelayWrap *w = static_cast<RelayWrap *>(arg);
  w->hook_ran = true;
  StopRelay(w);
}

void FinalizeRelay(napi_env env, void *data, void *) {
  RelayWrap *w = static_cast<RelayWrap *>(data);
  StopRelay(w);
  if (!w->hook_ran) napi_remove_env_cleanup_hook(env, CleanupHook, w);
  delete w->engine;
  delete w;
}

napi_value Construct(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_value self;
  if (napi_get_cb_info(env, info, &argc, argv, &self, nullptr) != napi_ok) return nullptr;
  napi_valuetype t = napi_undefined;
  if (argc < 1 || napi_typeof(env, argv[0], &t) != napi_ok || t != napi_function) return ThrowType(env, "onEvent must be a function");
  RelayWrap *w = new RelayWrap();
  w->env = env;
  napi_value name = Str(env, "trellis-tls-relay");
  if (napi_create_threadsafe_function(env, argv[0], nullptr, name, 0, 1, nullptr, nullptr, nullptr, CallJs, &w->tsfn) != napi_ok) {
    delete w;
    return ThrowPlain(env, "cannot create the event channel");
  }
  napi_unref_threadsafe_function(env, w->tsfn);
  w->engine = new Engine(Sink, w);
  std::string error;
  if (!w->engine->Start(&error)) {
    napi_release_threadsafe_function(w->tsfn, napi_tsfn_release);
    delete w->engine;
    delete w;
    return ThrowPlain(env, "cannot start the relay: " + error);
  }
  if (napi_wrap(env, self, w, FinalizeRelay, nullptr, nullptr) != napi_ok) {
    StopRelay(w);
    delete w->engine;
    delete w;
    return ThrowPlain(env, "cannot wrap the relay");
  }
  napi_add_env_cleanup_hook(env, CleanupHook, w);
  return self;
}

// ---- contexts -----------------------------------------------------------

void FinalizeContext(napi_env, void *data, void *) {
  ContextHolder *h = static_cast<ContextHolder *>(data);
  SSL_CTX_free(h->ctx);
  delete h;
}

napi_value ReleaseContext(napi_env env, napi_callback_info info) {
  napi_value self;
  if (napi_get_cb_info(env, info, nullptr, nullptr, &self, nullptr) != napi_ok) return nullptr;
  void *p = nullptr;
  if (napi_unwrap(env, self, &p) != napi_ok || p == nullptr) return ThrowType(env, "not a RelayContext");
  ContextHolder *h = static_cast<ContextHolder *>(p);
  // Connections hold their own references (SSL_new), so this never cuts one off.
  SSL_CTX_free(h->ctx);
  h->ctx = nullptr;
  return nullptr;
}

bool GetField(napi_env env, napi_value obj, const char *name, napi_value *out) {
  bool has = false;
  if (napi_has_named_property(env, obj, name, &has) != napi_ok || !has) return false;
  return napi_get_named_property(env, obj, name, out) == napi_ok;
}

napi_value MakeContext(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  RelayWrap *w = ThisRelay(env, info, &argc, argv);
  if (w == nullptr) return nullptr;
  napi_valuetype t = napi_undefined;
  if (argc < 1 || napi_typeof(env, argv[0], &t) != napi_ok || t != napi_object) return ThrowType(env, "opts must be an object");
  ContextOptions opts;
  napi_value v;
  if (!GetField(env, argv[0], "server", &v) || napi_typeof(env, v, &t) != napi_ok || t != napi_boolean) return ThrowType(env, "server must be a boolean");
  napi_get_value_bool(env, v, &opts.server);
  if (GetField(env, argv[0], "resumption", &v)) {
    if (napi_typeof(env, v, &t) != napi_ok || (t != napi_boolean && t != napi_undefined)) return ThrowType(env, "resumption must be a boolean when given");
    if (t == napi_boolean) napi_get_value_bool(env, v, &opts.resumption);
  }
  if (GetField(env, argv[0], "groups", &v)) {
    if (napi_typeof(env, v, &t) != napi_ok || (t != napi_string && t != napi_undefined)) return ThrowType(env, "groups must be a string when given");
    if (t == napi_string && !GetString(env, v, &opts.groups)) return ThrowType(env, "groups must be a string when given");
  }
  if (!GetField(env, argv[0], "chainPem", &v) || !GetString(env, v, &opts.chain_pem)) return ThrowType(env, "chainPem must be a string");
  if (!GetField(env, argv[0], "caPem", &v) || !GetString(env, v, &opts.ca_pem)) return ThrowType(env, "caPem must be a string");
  if (!GetField(env, argv[0], "keyPem", &v) || !GetString(env, v, &opts.key_pem)) {
    OPENSSL_cleanse(&opts.key_pem[0], opts.key_pem.size());
    return ThrowType(env, "keyPem must be a string");
  }
  std::string error;
  SSL_CTX *ctx = BuildContext(opts, ConnOnNewSession, &error);
  if (ctx == nullptr) return ThrowPlain(env, error);
  ContextHolder *h = new ContextHolder();
  h->ctx = ctx;
  h->server = opts.server;
  napi_value obj, fn;
  napi_create_object(env, &obj);
  if (napi_wrap(env, obj, h, FinalizeContext, nullptr, nullptr) != napi_ok) {
    FinalizeContext(env, h, nullptr);
    return ThrowPlain(env, "cannot wrap the context");
  }
  napi_create_function(env, "release", NAPI_AUTO_LENGTH, ReleaseContext, nullptr, &fn);
  napi_set_named_property(env, obj, "release", fn);
  return obj;
}

ContextHolder *GetContext(napi_env env, napi_value v) {
  napi_valuetype t = napi_undefined;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_object) return nullptr;
  void *p = nullptr;
  if (napi_unwrap(env, v, &p) != napi_ok || p == nullptr) return nullptr;
  ContextHolder *h = static_cast<ContextHolder *>(p);
  return h->ctx != nullptr ? h : nullptr;
}

// ---- connections --------------------------------------------------------

// dup() of a caller's socket, non-blocking, no Nagle. -1 with errno on failure.
int TakeSocket(int64_t fd) {
  int copy = fcntl(static_cast<int>(fd), F_DUPFD_CLOEXEC, 3);
  if (copy < 0) return -1;
  int flags = fcntl(copy, F_GETFL);
  if (flags < 0 || fcntl(copy, F_SETFL, flags | O_NONBLOCK) != 0) {
    int saved = errno;
    close(copy);
    errno = saved;
    return -1;
  }
  int one = 1;
  (void)setsockopt(copy, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return copy;
}

napi_value IdValue(napi_env env, int64_t id) { return Num(env, static_cast<double>(id)); }

// The common part of acceptTls and connectTls: our own copy of the
// descriptor, an SSL from the context (offering `session`, whose reference
// this takes), and the command that hands both to the loop. Returns the id,
// or throws (naming `fd_name` when the descriptor cannot be taken).
napi_value StartConnection(napi_env env, RelayWrap *w, Command::Kind kind, int64_t fd, const char *fd_name, SSL_CTX *ctx, SSL_SESSION *session,
                           const Address *addr, std::string first_bytes = std::string()) {
  int sock = TakeSocket(fd);
  if (sock < 0) {
    SSL_SESSION_free(session);
    return ThrowPlain(env, std::string(fd_name) + ": " + ErrnoName(errno));
  }
  Command cmd;
  cmd.kind = kind;
  if (kind == Command::kAccept) {
    // The loop makes the SSL when the peer's first bytes arrive (see
    // kAwaitingBytes); until then the connection holds this reference only.
    SSL_CTX_up_ref(ctx);
    cmd.ctx = ctx;
  } else {
    SSL *ssl = SSL_new(ctx);
    if (ssl == nullptr) {
      SSL_SESSION_free(session);
      close(sock);
      return ThrowPlain(env, "SSL_new: " + TakeSslReason("out of memory"));
    }
    if (session != nullptr) {
      if (SSL_set_session(ssl, session) != 1) ERR_clear_error();
      SSL_SESSION_free(session);  // the SSL holds its own reference
    }
    cmd.ssl = ssl;
  }
  cmd.id = w->engine->NextId();
  cmd.fd = sock;
  cmd.first_bytes = std::move(first_bytes);
  if (addr != nullptr) {
    cmd.has_addr = true;
    cmd.addr = *addr;
  }
  w->engine->CountOpened();
  if (!w->engine->Post(cmd)) {
    w->engine->CountClosedUnstarted();
    SSL_free(cmd.ssl);
    SSL_CTX_free(cmd.ctx);
    close(sock);
    return ThrowPlain(env, "the relay is stopped");
  }
  return IdValue(env, cmd.id);
}

napi_value AcceptTls(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  RelayWrap *w = ThisRelay(env, info, &argc, argv);
  if (w == nullptr) return nullptr;
  int64_t fd;
  if (argc < 2 || !GetInteger(env, argv[0], 0, 2147483647.0, &fd)) return ThrowType(env, "fd must be a non-negative integer");
  ContextHolder *h = GetContext(env, argv[1]);
  if (h == nullptr) return ThrowType(env, "ctx must be a RelayContext that was not released");
  if (!h->server) return ThrowType(env, "ctx must be a server context (server: true) for acceptTls");
  if (w->stopped) return ThrowPlain(env, "the relay is stopped");
  return StartConnection(env, w, Command::kAccept, fd, "fd", h->ctx, nullptr, nullptr);
}

// Bytes the app sent that JS already read (an /http listener reads them to
// tell HTTP/2 from HTTP/1.1); more than this and the Node path takes over.
constexpr size_t kMaxFirstBytes = 1 << 20;

napi_value ConnectTls(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  RelayWrap *w = ThisRelay(env, info, &argc, argv);
  if (w == nullptr) return nullptr;
  int64_t fd, port;
  std::string host;
  Address addr;
  if (argc < 4 || !GetInteger(env, argv[0], 0, 2147483647.0, &fd)) return ThrowType(env, "plainFd must be a non-negative integer");
  if (!GetString(env, argv[1], &host)) return ThrowType(env, "host must be a string");
  if (!GetInteger(env, argv[2], 1, 65535, &port)) return ThrowType(env, "port must be an integer in 1..65535");
  if (!ParseAddress(host, port, &addr)) return ThrowType(env, "host must be an IPv4 or IPv6 literal");
  ContextHolder *h = GetContext(env, argv[3]);
  if (h == nullptr) return ThrowType(env, "ctx must be a RelayContext that was not released");
  if (h->server) return ThrowType(env, "ctx must be a client context (server: false) for connectTls");
  SSL_SESSION *session = nullptr;
  if (argc >= 5) {
    napi_valuetype t;
    napi_typeof(env, argv[4], &t);
    bool is_buffer = false;
    if (t != napi_null && t != napi_undefined) {
      if (napi_is_buffer(env, argv[4], &is_buffer) != napi_ok || !is_buffer) return ThrowType(env, "session must be a Buffer or null");
      void *data = nullptr;
      size_t len = 0;
      napi_get_buffer_info(env, argv[4], &data, &len);
      const unsigned char *p = static_cast<const unsigned char *>(data);
      if (len > 0 && len < (1u << 20)) session = d2i_SSL_SESSION(nullptr, &p, static_cast<long>(len));
      ERR_clear_error();  // a bad session is ignored: a full handshake follows
    }
  }
  std::string first_bytes;
  if (argc >= 6) {
    napi_valuetype t;
    napi_typeof(env, argv[5], &t);
    if (t != napi_null && t != napi_undefined) {
      bool is_buffer = false;
      void *data = nullptr;
      size_t len = 0;
      if (napi_is_buffer(env, argv[5], &is_buffer) != napi_ok || !is_buffer || napi_get_buffer_info(env, argv[5], &data, &len) != napi_ok || len > kMaxFirstBytes) {
        SSL_SESSION_free(session);
        return ThrowType(env, "firstBytes must be a Buffer of at most 1 MiB, or null");
      }
      first_bytes.assign(static_cast<const char *>(data), len);
    }
  }
  if (w->stopped) {
    SSL_SESSION_free(session);
    return ThrowPlain(env, "the relay is stopped");
  }
  return StartConnection(env, w, Command::kConnect, fd, "plainFd", h->ctx, session, &addr, std::move(first_bytes));
}

napi_value Allow(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  RelayWrap *w = ThisRelay(env, info, &argc, argv);
  if (w == nullptr) return nullptr;
  int64_t id, port = 0;
  if (argc < 1 || !GetInteger(env, argv[0], 1, 9007199254740991.0, &id)) return ThrowType(env, "id must be a positive integer");
  Command cmd;
  cmd.kind = Command::kAllow;
  cmd.id = id;
  napi_valuetype t = napi_undefined;
  if (argc >= 2) napi_typeof(env, argv[1], &t);
  if (t != napi_undefined && t != napi_null) {
    std::string host;
    if (!GetString(env, argv[1], &host)) return ThrowType(env, "appHost must be a string");
    if (argc < 3 || !GetInteger(env, argv[2], 1, 65535, &port)) return ThrowType(env, "appPort must be an integer in 1..65535");
    if (!ParseAddress(host, port, &cmd.addr)) return ThrowType(env, "appHost must be an IPv4 or IPv6 literal");
    cmd.has_addr = true;
  }
  if (!w->stopped) w->engine->Post(cmd);  // after stop() every connection is already closed
  return nullptr;
}

napi_value CloseConn(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  RelayWrap *w = ThisRelay(env, info, &argc, argv);
  if (w == nullptr) return nullptr;
  int64_t id;
  if (argc < 1 || !GetInteger(env, argv[0], 0, 9007199254740991.0, &id)) return ThrowType(env, "id must be a non-negative integer");
  Command cmd;
  cmd.kind = Command::kClose;
  cmd.id = id;
  if (!w->stopped) w->engine->Post(cmd);
  return nullptr;
}

napi_value Size(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  RelayWrap *w = ThisRelay(env, info, &argc, nullptr);
  if (w == nullptr) return nullptr;
  return Num(env, static_cast<double>(w->engine->size()));
}

napi_value StopMethod(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  RelayWrap *w = ThisRelay(env, info, &argc, nullptr);
  if (w == nullptr) return nullptr;
  StopRelay(w);
  return nullptr;
}

napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"context", nullptr, MakeContext, nullptr, nullptr, nullptr, napi_default_method, nullptr},
      {"acceptTls", nullptr, AcceptTls, nullptr, nullptr, nullptr, napi_default_method, nullptr},
      {"connectTls", nullptr, ConnectTls, nullptr, nullptr, nullptr, napi_default_method, nullptr},
      {"allow", nullptr, Allow, nullptr, nullptr, nullptr, napi_default_method, nullptr},
      {"close", nullptr, CloseConn, nullptr, nullptr, nullptr, napi_default_method, nullptr},
      {"size", nullptr, nullptr, Size, nullptr, nullptr, napi_default_jsproperty, nullptr},
      {"stop", nullptr, StopMethod, nullptr, nullptr, nullptr, napi_default_method, nullptr},
  };
  napi_value cls;
  if (napi_define_class(env, "Relay", NAPI_AUTO_LENGTH, Construct, nullptr, sizeof(props) / sizeof(props[0]), props, &cls) != napi_ok) return nullptr;
  napi_set_named_property(env, exports, "Relay", cls);
  return exports;
}

}  // namespace
}  // namespace trellis_relay

NAPI_MODULE_INIT() { return trellis_relay::Init(env, exports); }
