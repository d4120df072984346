#include "errors.h"

#include <errno.h>
#include <openssl/err.h>

namespace trellis_relay {

std::string ErrnoName(int err) {
  switch (err) {
    case ECONNREFUSED: return "ECONNREFUSED";
    case ECONNRESET: return "ECONNRESET";
    case ECONNABORTED: return "ECONNABORTED";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case EHOSTDOWN: return "EHOSTDOWN";
    case ENETUNREACH: return "ENETUNREACH";
    case ENETDOWN: return "ENETDOWN";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EPIPE: return "EPIPE";
    case ENOTCONN: return "ENOTCONN";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case EADDRINUSE: return "EADDRINUSE";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case EBADF: return "EBADF";
    case EINVAL: return "EINVAL";
    case ENOTSOCK: return "ENOTSOCK";
    case ENOBUFS: return "ENOBUFS";
    case ENOMEM: return "ENOMEM";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case EIO: return "EIO";
    default: return "E" + std::to_string(err);
  }
}

std::string TakeSslReason(const char *fallback) {
  unsigned long code = ERR_get_error();
  std::string out;
  if (code == 0) {
    out = fallback;
  } else {
    const char *reason = ERR_reason_error_string(code);
    out = reason != nullptr ? reason : ("error " + std::to_string(ERR_GET_REASON(code)));
  }
  ERR_clear_error();
  return out;
}

std::string TakeSslError(const char *fallback) {
  return "SSL:" + TakeSslReason(fallback);
}

}  // namespace trellis_relay
