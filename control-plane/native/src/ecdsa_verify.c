/*
 * ECDSA P-256 / P-384 signature verification from a raw uncompressed point,
 * for the CA's CSR check (Trellis control plane).
 *
 * Why this exists: node:crypto can only verify with a KeyObject, and building
 * one from a public point makes OpenSSL run a full EC_KEY_check_key, which
 * includes multiplying the point by the group order. For P-256 and P-384 the
 * cofactor is 1, so every point on the curve other than infinity already has
 * that order and the multiplication proves nothing; it costs about as much
 * as the signature check itself.
 *
 * What is still checked, and must stay checked: the encoding is exactly
 * 04 || X || Y of the curve's size, X and Y are field elements, and the point
 * is on the curve and not infinity (EC_POINT_oct2point, then an explicit
 * EC_POINT_is_on_curve). The signature goes through ECDSA_verify, the same
 * OpenSSL routine node:crypto ends in, which also refuses non-canonical DER.
 *
 * Links against the OpenSSL that the node binary itself exports, with the
 * headers node ships, so verdicts match node:crypto's exactly.
 */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <node_api.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <stdlib.h>

enum { CURVE_P256 = 0, CURVE_P384 = 1, CURVE_COUNT = 2 };
enum { RESULT_BAD_KEY = -1, RESULT_BAD_SIGNATURE = 0, RESULT_VERIFIED = 1 };

static const int curve_nids[CURVE_COUNT] = { NID_X9_62_prime256v1, NID_secp384r1 };
static const size_t curve_bytes[CURVE_COUNT] = { 32, 48 };

/* One set per Node environment (main thread, each worker): never shared across threads. */
typedef struct {
  EC_KEY *key[CURVE_COUNT];
  EC_POINT *point[CURVE_COUNT];
  BN_CTX *bn;
} instance_t;

static void instance_free(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  instance_t *inst = (instance_t *)data;
  if (inst->bn) BN_CTX_free(inst->bn);
  for (int i = 0; i < CURVE_COUNT; i++) {
    if (inst->point[i]) EC_POINT_free(inst->point[i]);
    if (inst->key[i]) EC_KEY_free(inst->key[i]);
  }
  free(inst);
}

static napi_value throw_type_error(napi_env env, const char *message) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
  return NULL;
}

static napi_value make_int(napi_env env, int v) {
  napi_value out;
  napi_create_int32(env, v, &out);
  return out;
}

static int get_buffer(napi_env env, napi_value v, const unsigned char **data, size_t *len) {
  bool is_buffer = false;
  if (napi_is_buffer(env, v, &is_buffer) != napi_ok || !is_buffer) return 0;
  void *p = NULL;
  if (napi_get_buffer_info(env, v, &p, len) != napi_ok) return 0;
  *data = (const unsigned char *)p;
  return 1;
}

/*
 * verify(curve, point, hash, message, signatureDer) -> 1 | 0 | -1
 *   curve: 0 = P-256, 1 = P-384; hash: 0 = SHA-256, 1 = SHA-384, 2 = SHA-512
 *   1: the signature verifies; 0: it does not (or is not canonical DER);
 *   -1: the point is not an uncompressed point on the curve.
 */
static napi_value verify(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 5) {
    return throw_type_error(env, "verify(curve, point, hash, message, signature) takes 5 arguments");
  }
  int32_t curve = -1, hash = -1;
  if (napi_get_value_int32(env, argv[0], &curve) != napi_ok || curve < 0 || curve >= CURVE_COUNT) {
    return throw_type_error(env, "curve must be 0 (P-256) or 1 (P-384)");
  }
  if (napi_get_value_int32(env, argv[2], &hash) != napi_ok || hash < 0 || hash > 2) {
    return throw_type_error(env, "hash must be 0 (SHA-256), 1 (SHA-384) or 2 (SHA-512)");
  }
  const unsigned char *point, *msg, *sig;
  size_t point_len, msg_len, sig_len;
  if (!get_buffer(env, argv[1], &point, &point_len)) return throw_type_error(env, "point must be a Buffer");
  if (!get_buffer(env, argv[3], &msg, &msg_len)) return throw_type_error(env, "message must be a Buffer");
  if (!get_buffer(env, argv[4], &sig, &sig_len)) return throw_type_error(env, "signature must be a Buffer");

  instance_t *inst = NULL;
  if (napi_get_instance_data(env, (void **)&inst) != napi_ok || inst == NULL) {
    napi_throw_error(env, "ERR_ECDSA_VERIFY_STATE", "ecdsa-verify: not initialised");
    return NULL;
  }
  EC_KEY *key = inst->key[curve];
  EC_POINT *pub = inst->point[curve];
  const EC_GROUP *group = EC_KEY_get0_group(key);

  /* Uncompressed only: 04 || X || Y. Anything else is the caller's to route elsewhere. */
  if (point_len != 1 + 2 * curve_bytes[curve] || point[0] != 0x04) return make_int(env, RESULT_BAD_KEY);
  if (EC_POINT_oct2point(group, pub, point, point_len, inst->bn) != 1 || EC_POINT_is_at_infinity(group, pub) ||
      EC_POINT_is_on_curve(group, pub, inst->bn) != 1 || EC_KEY_set_public_key(key, pub) != 1) {
    ERR_clear_error();
    return make_int(env, RESULT_BAD_KEY);
  }

  const EVP_MD *md = hash == 0 ? EVP_sha256() : hash == 1 ? EVP_sha384() : EVP_sha512();
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (EVP_Digest(msg, msg_len, digest, &digest_len, md, NULL) != 1) {
    ERR_clear_error();
    napi_throw_error(env, "ERR_ECDSA_VERIFY_DIGEST", "ecdsa-verify: digest failed");
    return NULL;
  }
  if (sig_len > 0x7fffffff) return make_int(env, RESULT_BAD_SIGNATURE);
  int rc = ECDSA_verify(0, digest, (int)digest_len, sig, (int)sig_len, key);
  if (rc != 1) {
    ERR_clear_error();
    return make_int(env, RESULT_BAD_SIGNATURE);
  }
  return make_int(env, RESULT_VERIFIED);
}

static napi_value init(napi_env env, napi_value exports) {
  instance_t *inst = (instance_t *)calloc(1, sizeof(instance_t));
  if (inst == NULL) {
    napi_throw_error(env, "ERR_ECDSA_VERIFY_STATE", "ecdsa-verify: out of memory");
    return NULL;
  }
  inst->bn = BN_CTX_new();
  if (inst->bn == NULL) {
    ERR_clear_error();
    instance_free(env, inst, NULL);
    napi_throw_error(env, "ERR_ECDSA_VERIFY_STATE", "ecdsa-verify: out of memory");
    return NULL;
  }
  for (int i = 0; i < CURVE_COUNT; i++) {
    inst->key[i] = EC_KEY_new_by_curve_name(curve_nids[i]);
    inst->point[i] = inst->key[i] ? EC_POINT_new(EC_KEY_get0_group(inst->key[i])) : NULL;
    if (inst->key[i] == NULL || inst->point[i] == NULL) {
      ERR_clear_error();
      instance_free(env, inst, NULL);
      napi_throw_error(env, "ERR_ECDSA_VERIFY_STATE", "ecdsa-verify: cannot create the curve groups");
      return NULL;
    }
  }
  if (napi_set_instance_data(env, inst, instance_free, NULL) != napi_ok) {
    instance_free(env, inst, NULL);
    napi_throw_error(env, "ERR_ECDSA_VERIFY_STATE", "ecdsa-verify: cannot keep state");
    return NULL;
  }
  napi_value fn;
  napi_create_function(env, "verify", NAPI_AUTO_LENGTH, verify, NULL, &fn);
  napi_set_named_property(env, exports, "verify", fn);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
