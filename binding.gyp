{
  # The same addon as CMakeLists.txt (the main build, through cmake-js), for node-gyp: `npx node-gyp rebuild`, and
  # the tools that find native modules by this file (Electron's rebuild). Everything that depends on the machine
  # comes from scripts/torch-flags.js (the libtorch scripts/find-libtorch.js finds; the sources CMakeLists.txt lists).
  "targets": [{
    "target_name": "bert_addon",
    "sources": ["<!@(node scripts/torch-flags.js --sources)"],
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "<!@(node scripts/torch-flags.js --include)"],
    "defines": ["NDEBUG", "NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED", "<!@(node scripts/torch-flags.js --defines)"],
    # libtorch needs exceptions and RTTI, and its 2.14 headers C++20: node-gyp's defaults are off and C++17.
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17"],
    "cflags_cc": ["-fexceptions", "-frtti", "<!@(node scripts/torch-flags.js --cflags)"],
    "libraries": ["<!@(node scripts/torch-flags.js --libraries)"]
  }]
}
