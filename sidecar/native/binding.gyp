{
  "targets": [
    {
      "target_name": "tls_relay",
      "sources": ["src/relay.cc", "src/engine.cc", "src/conn.cc", "src/handshake.cc", "src/pump.cc", "src/ssl_facts.cc", "src/tls_context.cc", "src/errors.cc"],
      "defines": ["NAPI_VERSION=8"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-fvisibility=hidden", "-fvisibility-inlines-hidden"],
      "ldflags": [],
      "xcode_settings": { "OTHER_CPLUSPLUSFLAGS": ["-std=c++17", "-O2"] }
    }
  ]
}
