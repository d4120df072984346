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
#include <node_api.h>

#include "ecdsa_core.h"

static void instance_free(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  ecdsa_state_free((ecdsa_state *)data);
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
  if (napi_get_value_int32(env, argv[0], &curve) != napi_ok || curve < 0 || curve >= ECDSA_CURVE_COUNT) {
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

  ecdsa_state *st = NULL;
  if (napi_get_instance_data(env, (void **)&st) != napi_ok || st == NULL) {
    napi_throw_error(env, "ERR_ECDSA_VERIFY_STATE", "ecdsa-verify: not initialised");
    return NULL;
  }
  int rc = ecdsa_verify_raw(st, curve, point, point_len, hash, msg, msg_len, sig, sig_len);
  if (rc == ECDSA_DIGEST_FAILED) {
    napi_throw_error(env, "ERR_ECDSA_VERIFY_DIGEST", "ecdsa-verify: digest failed");
    return NULL;
  }
  return make_int(env, rc);
}

static napi_value init(napi_env env, napi_value exports) {
  ecdsa_state *inst = ecdsa_state_new();
  if (inst == NULL) {
    napi_throw_error(env, "ERR_ECDSA_VERIFY_STATE", "ecdsa-verify: cannot create the curve groups");
    return NULL;
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
