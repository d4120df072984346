/* See ecdsa_core.h and the rationale at the top of ecdsa_verify.c. */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include "ecdsa_core.h"

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <stdlib.h>

static const int curve_nids[ECDSA_CURVE_COUNT] = { NID_X9_62_prime256v1, NID_secp384r1 };
static const size_t curve_bytes[ECDSA_CURVE_COUNT] = { 32, 48 };

struct ecdsa_state {
  EC_KEY *key[ECDSA_CURVE_COUNT];
  EC_POINT *point[ECDSA_CURVE_COUNT];
  BN_CTX *bn;
};

void ecdsa_state_free(ecdsa_state *st) {
  if (st == NULL) return;
  if (st->bn) BN_CTX_free(st->bn);
  for (int i = 0; i < ECDSA_CURVE_COUNT; i++) {
    if (st->point[i]) EC_POINT_free(st->point[i]);
    if (st->key[i]) EC_KEY_free(st->key[i]);
  }
  free(st);
}

ecdsa_state *ecdsa_state_new(void) {
  ecdsa_state *st = (ecdsa_state *)calloc(1, sizeof(ecdsa_state));
  if (st == NULL) return NULL;
  st->bn = BN_CTX_new();
  for (int i = 0; i < ECDSA_CURVE_COUNT; i++) {
    st->key[i] = EC_KEY_new_by_curve_name(curve_nids[i]);
    st->point[i] = st->key[i] ? EC_POINT_new(EC_KEY_get0_group(st->key[i])) : NULL;
  }
  int ok = st->bn != NULL;
  for (int i = 0; i < ECDSA_CURVE_COUNT; i++) ok = ok && st->key[i] != NULL && st->point[i] != NULL;
  if (!ok) {
    ERR_clear_error();
    ecdsa_state_free(st);
    return NULL;
  }
  return st;
}

int ecdsa_verify_raw(ecdsa_state *st, int curve, const unsigned char *point, size_t point_len, int hash, const unsigned char *msg, size_t msg_len,
                     const unsigned char *sig, size_t sig_len) {
  EC_KEY *key = st->key[curve];
  EC_POINT *pub = st->point[curve];
  const EC_GROUP *group = EC_KEY_get0_group(key);

  /* Uncompressed only: 04 || X || Y. Anything else is the caller's to route elsewhere. */
  if (point_len != 1 + 2 * curve_bytes[curve] || point[0] != 0x04) return ECDSA_BAD_KEY;
  if (EC_POINT_oct2point(group, pub, point, point_len, st->bn) != 1 || EC_POINT_is_at_infinity(group, pub) ||
      EC_POINT_is_on_curve(group, pub, st->bn) != 1 || EC_KEY_set_public_key(key, pub) != 1) {
    ERR_clear_error();
    return ECDSA_BAD_KEY;
  }

  const EVP_MD *md = hash == ECDSA_HASH_SHA256 ? EVP_sha256() : hash == ECDSA_HASH_SHA384 ? EVP_sha384() : EVP_sha512();
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (EVP_Digest(msg, msg_len, digest, &digest_len, md, NULL) != 1) {
    ERR_clear_error();
    return ECDSA_DIGEST_FAILED;
  }
  if (sig_len > 0x7fffffff) return ECDSA_BAD_SIGNATURE;
  int rc = ECDSA_verify(0, digest, (int)digest_len, sig, (int)sig_len, key);
  if (rc != 1) {
    ERR_clear_error();
    return ECDSA_BAD_SIGNATURE;
  }
  return ECDSA_VERIFIED;
}
