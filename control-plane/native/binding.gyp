{
  "targets": [
    {
      "target_name": "ecdsa_verify",
      "sources": ["src/ecdsa_verify.c", "src/ecdsa_core.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-O2", "-Wall", "-Wextra"],
      "ldflags": ["-Wl,-z,now"],
      "xcode_settings": { "OTHER_CFLAGS": ["-O2"] }
    }
  ]
}
