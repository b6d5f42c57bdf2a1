# Sourced by the GPU scripts: $OUT, a log of everything in $OUT/$1, `step` headings with elapsed seconds, and the
# Node binary and packages pack.sh put in .gpu/ (the GPU machine has no Node).
OUT=${OUT:-$PWD/.cache/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/$1") 2>&1
t0=$(date +%s)
step() { echo; echo "=== [$(( $(date +%s) - t0 ))s] $*"; }
if ! command -v node >/dev/null; then
  mkdir -p /tmp/nodebin && xz -dc .gpu/node.xz > /tmp/nodebin/node && chmod +x /tmp/nodebin/node
  export PATH=/tmp/nodebin:$PATH
fi
[ -d node_modules ] || cp -r .gpu/node_modules node_modules
[ -d dist ] || cp -r .gpu/dist dist
