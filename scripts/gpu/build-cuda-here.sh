#!/usr/bin/env bash
# Before spending device time: build the addon here against a CUDA libtorch (torch 2.14.1's CUDA wheel, ~5.5 GB, from
# this machine's disk) in a clean clone, and run the CPU tests with it. Catches compile and link errors of the CUDA
# build (it needs C++20, CUDAToolkit_ROOT / CUDA_TOOLKIT_ROOT_DIR, and NVRTC from the wheel: scripts/build-addon.js).
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=${CUDA_VENV:-/tmp/cuda-torch-venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import torch" 2>/dev/null || "$venv/bin/pip" install -q torch==2.14.1
dir=$(mktemp -d)
git clone -q . "$dir"
ln -s "$PWD/node_modules" "$dir/node_modules"
npx tsc -p tsconfig.json && cp -r dist "$dir/dist"
# No GPU here to detect an architecture from: name Hopper's.
(cd "$dir" && TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} PYTHON="$venv/bin/python" node scripts/build-addon.js)
# The Python references (transformers) come from this checkout's test environment (scripts/python-env.js).
ref=$(node scripts/python-env.js | tail -1)
(cd "$dir" && node -e "import('./dist/src/native.js').then(m => console.log(JSON.stringify(m.addon().runtime())))" &&
  PYTHON="$ref" node --test dist/test/parity.test.js dist/test/model-errors.test.js dist/test/addon.test.js)
rm -rf "$dir"
