/*
 * libFuzzer target for the ECDSA verifier's input parsing (src/ecdsa_core.c,
 * the code the addon runs): the public point and the DER signature, with
 * any message, curve and hash.
 *
 * Input: byte 0 picks the curve (bit 0), the hash (bits 1-2, 3 reads as
 * SHA-256) and where the point comes from (bit 3): the input (then byte 1 is
 * its length and the point follows) or a fixed key of the curve, so that
 * the fuzzer reaches the signature parsing without having to find a point
 * on the curve. Then one byte of signature length, the signature, and the
 * rest is the message.
 *
 * Beyond "no crash, no sanitizer report" it checks the contract: the
 * verdict is -1, 0 or 1, OpenSSL's error queue is left empty, and with the
 * fixed key the verdict agrees with OpenSSL's EVP_DigestVerify (a second
 * decoder path for the same signature).
 *
 * Seeds: with TRELLIS_FUZZ_SEEDS_DIR set, initialisation writes valid and
 * broken inputs there (signed with the fixed keys, which are derived from a
 * constant, so nothing secret is committed or needed).
 */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/ecdsa_core.h"

static ecdsa_state *state;
static EC_KEY *fixed_key[ECDSA_CURVE_COUNT];
static EVP_PKEY *fixed_pkey[ECDSA_CURVE_COUNT];
static unsigned char fixed_point[ECDSA_CURVE_COUNT][97];
static size_t fixed_point_len[ECDSA_CURVE_COUNT];
static const int nids[ECDSA_CURVE_COUNT] = { NID_X9_62_prime256v1, NID_secp384r1 };

static const EVP_MD *md_of(int hash) { return hash == ECDSA_HASH_SHA256 ? EVP_sha256() : hash == ECDSA_HASH_SHA384 ? EVP_sha384() : EVP_sha512(); }

/* A key from a fixed scalar: reproducible across runs without storing one. */
static void make_fixed_key(int curve) {
  EC_KEY *key = EC_KEY_new_by_curve_name(nids[curve]);
  const EC_GROUP *group = EC_KEY_get0_group(key);
  BIGNUM *d = BN_new();
  BN_set_word(d, 0x7e11150000000000ULL + (unsigned long)curve);
  EC_POINT *pub = EC_POINT_new(group);
  if (!key || !d || !pub || EC_POINT_mul(group, pub, d, NULL, NULL, NULL) != 1 || EC_KEY_set_private_key(key, d) != 1 || EC_KEY_set_public_key(key, pub) != 1) abort();
  fixed_point_len[curve] = EC_POINT_point2oct(group, pub, POINT_CONVERSION_UNCOMPRESSED, fixed_point[curve], sizeof fixed_point[curve], NULL);
  fixed_key[curve] = key;
  fixed_pkey[curve] = EVP_PKEY_new();
  EC_KEY_up_ref(key);
  if (fixed_point_len[curve] == 0 || EVP_PKEY_assign_EC_KEY(fixed_pkey[curve], key) != 1) abort();
  EC_POINT_free(pub);
  BN_free(d);
}

static void write_seed(const char *dir, const char *name, const unsigned char *data, size_t len) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f) return;
  fwrite(data, 1, len, f);
  fclose(f);
}

/* byte 0, [point], sig length, sig, message. */
static size_t seed(unsigned char *out, int curve, int hash, int fixed, const unsigned char *sig, size_t sig_len, const char *msg) {
  size_t n = 0;
  out[n++] = (unsigned char)(curve | (hash << 1) | (fixed << 3));
  if (!fixed) {
    out[n++] = (unsigned char)fixed_point_len[curve];
    memcpy(out + n, fixed_point[curve], fixed_point_len[curve]);
    n += fixed_point_len[curve];
  }
  out[n++] = (unsigned char)sig_len;
  memcpy(out + n, sig, sig_len);
  n += sig_len;
  memcpy(out + n, msg, strlen(msg));
  return n + strlen(msg);
}

static void write_seeds(const char *dir) {
  static const char *msg = "trellis csr to be signed";
  unsigned char buf[512], sig[160], digest[EVP_MAX_MD_SIZE];
  int count = 0;
  char name[64];
  for (int curve = 0; curve < ECDSA_CURVE_COUNT; curve++) {
    for (int hash = 0; hash < 3; hash++) {
      unsigned int dlen = 0, slen = 0;
      if (EVP_Digest(msg, strlen(msg), digest, &dlen, md_of(hash), NULL) != 1 || ECDSA_sign(0, digest, (int)dlen, sig, &slen, fixed_key[curve]) != 1) abort();
      for (int fixed = 0; fixed < 2; fixed++) {
        snprintf(name, sizeof name, "valid-%d", count++);
        write_seed(dir, name, buf, seed(buf, curve, hash, fixed, sig, slen, msg));
      }
      /* Broken DER: a long-form length, a truncated signature, a negative r. */
      unsigned char bad[160];
      memcpy(bad, sig, slen);
      bad[1] = 0x81;
      snprintf(name, sizeof name, "bad-%d", count++);
      write_seed(dir, name, buf, seed(buf, curve, hash, 1, bad, slen, msg));
      snprintf(name, sizeof name, "bad-%d", count++);
      write_seed(dir, name, buf, seed(buf, curve, hash, 1, sig, slen - 3, msg));
      memcpy(bad, sig, slen);
      bad[4] |= 0x80;
      snprintf(name, sizeof name, "bad-%d", count++);
      write_seed(dir, name, buf, seed(buf, curve, hash, 1, bad, slen, msg));
    }
  }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  state = ecdsa_state_new();
  if (!state) abort();
  for (int c = 0; c < ECDSA_CURVE_COUNT; c++) make_fixed_key(c);
  const char *dir = getenv("TRELLIS_FUZZ_SEEDS_DIR");
  if (dir && *dir) write_seeds(dir);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  size_t at = 0;
  const int curve = data[at] & 1;
  int hash = (data[at] >> 1) & 3;
  if (hash == 3) hash = ECDSA_HASH_SHA256;
  const int fixed = (data[at] >> 3) & 1;
  at++;
  const unsigned char *point = fixed_point[curve];
  size_t point_len = fixed_point_len[curve];
  if (!fixed) {
    point_len = data[at++];
    if (size - at < point_len) return 0;
    point = data + at;
    at += point_len;
  }
  if (size - at < 1) return 0;
  size_t sig_len = data[at++];
  if (size - at < sig_len) return 0;
  const unsigned char *sig = data + at;
  at += sig_len;
  const unsigned char *msg = data + at;
  size_t msg_len = size - at;

  int rc = ecdsa_verify_raw(state, curve, point, point_len, hash, msg, msg_len, sig, sig_len);
  if (rc != ECDSA_BAD_KEY && rc != ECDSA_BAD_SIGNATURE && rc != ECDSA_VERIFIED) {
    fprintf(stderr, "verdict %d is not -1, 0 or 1\n", rc);
    abort();
  }
  if (ERR_peek_error() != 0) {
    fprintf(stderr, "ecdsa_verify_raw left an OpenSSL error queued\n");
    abort();
  }
  if (fixed) {
    if (rc == ECDSA_BAD_KEY) {
      fprintf(stderr, "the fixed key was refused\n");
      abort();
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ref = EVP_DigestVerifyInit(ctx, NULL, md_of(hash), NULL, fixed_pkey[curve]) == 1 && EVP_DigestVerify(ctx, sig, sig_len, msg, msg_len) == 1;
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    if (ref != (rc == ECDSA_VERIFIED)) {
      fprintf(stderr, "verdict %d but EVP_DigestVerify says %d\n", rc, ref);
      abort();
    }
  }
  return 0;
}
