{
  "targets": [
    {
      "target_name": "sockwatch",
      "sources": [
        "native/addon.cc",
        "native/netlink.cc",
        "native/inet_diag.cc",
        "native/scan.cc",
        "native/proc_udp.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc": ["-std=c++17", "-O3", "-flto=auto", "-Wall", "-Wextra", "-fvisibility=hidden", "-fstack-protector-strong"],
      "cflags_cc!": ["-fno-exceptions"],
      "ldflags": ["-flto=auto", "-O3"]
    }
  ]
}
