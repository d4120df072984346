// The stages of a connection's state machine (conn.h), shared by the files
// that implement them: conn.cc (entry points, connects, epoll interest),
// handshake.cc (first bytes, TLS handshake, the handshake event) and
// pump.cc (relaying both ways, half-close). Loop thread only.
#pragma once
#include <string>

#include "conn.h"

namespace trellis_relay {

// conn.cc
/** Destroys the connection, reporting `error` when `has_error`. */
void Close(Conn &c, bool has_error, const std::string &error);
/** Registers exactly the readiness the connection now waits for. False if it was closed because epoll refused. */
bool UpdateInterest(Conn &c);

// handshake.cc
/** Reports a failed handshake and closes. */
void FailHandshake(Conn &c, const std::string &error);
/** Attaches the socket to the SSL object and starts the handshake. */
void BeginHandshake(Conn &c);
/** Continues the handshake after readiness. */
void Handshake(Conn &c);
/** kAwaitingBytes: the peer's first bytes (or FIN) arrived; makes the SSL object and begins. */
void FirstBytes(Conn &c);

// pump.cc
/** Enters kRelaying with every readiness hint true and relays. */
void StartRelay(Conn &c);
/** Moves bytes both ways until blocked; closes when both directions are done. */
void Relay(Conn &c);

}  // namespace trellis_relay
