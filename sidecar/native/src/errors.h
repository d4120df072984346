// Error names the engine reports to TypeScript: errno names for socket
// errors and 'SSL:<reason>' for OpenSSL failures. TypeScript matches on these
// strings, so they are stable and never carry key material or peer data.
#pragma once
#include <string>

namespace trellis_relay {

/** 'ECONNRESET' etc.; 'E<number>' for errnos without a name here. */
std::string ErrnoName(int err);

/**
 * 'SSL:' + the reason of the first queued OpenSSL error, then clears the
 * thread's error queue; `fallback` when the queue is empty.
 */
std::string TakeSslError(const char *fallback);

/** The reason of the first queued OpenSSL error (or `fallback`), then clears the queue. */
std::string TakeSslReason(const char *fallback);

}  // namespace trellis_relay
