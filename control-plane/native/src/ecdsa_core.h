/*
 * The verifier proper, without N-API: the point and signature checks of
 * ecdsa_verify.c, so that a fuzzer can drive the same code the addon runs.
 * One state per thread (Node environment); never shared across threads.
 */
#ifndef TRELLIS_ECDSA_CORE_H
#define TRELLIS_ECDSA_CORE_H

#include <stddef.h>

enum { ECDSA_CURVE_P256 = 0, ECDSA_CURVE_P384 = 1, ECDSA_CURVE_COUNT = 2 };
enum { ECDSA_HASH_SHA256 = 0, ECDSA_HASH_SHA384 = 1, ECDSA_HASH_SHA512 = 2 };
/* Verdicts; ECDSA_DIGEST_FAILED is an internal failure, never a verdict on the input. */
enum { ECDSA_DIGEST_FAILED = -2, ECDSA_BAD_KEY = -1, ECDSA_BAD_SIGNATURE = 0, ECDSA_VERIFIED = 1 };

typedef struct ecdsa_state ecdsa_state;

/* The curve groups and scratch space; NULL when OpenSSL cannot make them. */
ecdsa_state *ecdsa_state_new(void);
void ecdsa_state_free(ecdsa_state *st);

/*
 * Verifies `sig` (DER) over `msg` hashed with `hash`, under the public key
 * `point`, which must be exactly 04 || X || Y of `curve`'s size, on the
 * curve and not infinity. `curve` and `hash` must be in range (the caller
 * checks them). Returns ECDSA_VERIFIED, ECDSA_BAD_SIGNATURE (not verified,
 * or not canonical DER), ECDSA_BAD_KEY, or ECDSA_DIGEST_FAILED. Leaves
 * OpenSSL's error queue empty.
 */
int ecdsa_verify_raw(ecdsa_state *st, int curve, const unsigned char *point, size_t point_len, int hash, const unsigned char *msg, size_t msg_len,
                     const unsigned char *sig, size_t sig_len);

#endif
