#!/usr/bin/env bash
# Here, before a device call: fills .gpu/ (ignored; name it in the device call's `carry`) with what the bare GPU
# machine lacks: an xz-compressed Node binary, production node_modules, the compiled dist/, and an HF home with
# MRPC and the MiniLM tokenizer and config (no weights: they would exceed the 64 MiB transfer limit; check.sh
# gives the model random weights there, which is fine for timing but not for accuracy).
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf .gpu && mkdir -p .gpu
xz -T0 -6 -c "$(command -v node)" > .gpu/node.xz
npx tsc -p tsconfig.json
cp -r dist .gpu/dist
stage=$(mktemp -d)
cp package.json package-lock.json "$stage/"
(cd "$stage" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund >/dev/null)
mv "$stage/node_modules" .gpu/node_modules
# Not loaded at run time, and over the device call's 64 MiB: protobufjs's own command-line tool and browser bundles,
# type declarations.
rm -rf .gpu/node_modules/onnx-proto/node_modules/protobufjs/{cli,dist} .gpu/node_modules/@types
rm -rf "$stage"
home=$(node dist/scripts/prepare-minilm.js | tail -1)
mkdir -p .gpu/hf-home/hub
cp -r "$home/hub/datasets--nyu-mll--glue" .gpu/hf-home/hub/
mkdir -p .gpu/minilm
snap=$(ls -d "$home"/hub/models--sentence-transformers--all-MiniLM-L6-v2/snapshots/*)
for f in config.json tokenizer.json tokenizer_config.json vocab.txt special_tokens_map.json; do cp -L "$snap/$f" .gpu/minilm/; done
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
du -sh .gpu
