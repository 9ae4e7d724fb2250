#!/usr/bin/env bash
# The `tools` test tier's environment: the real quantizers in a venv of their own (they pin their own
# torch and transformers; the project's venv never gets them) and llama-quantize built from the llama.cpp
# sources vendored in the pinned llama-cpp-python sdist. Both are cached; a second run does nothing.
#
#   scripts/tools_venv.sh            # prints the venv's python and the llama-quantize binary
#   scripts/tools_venv.sh venv       # only the venv (prints its python)
#   SWI_TOOLS_DIR=... overrides the cache folder (default: super-weight-index/tools in the user cache,
#   so CI's fresh clones reuse it)
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS_DIR="${SWI_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/super-weight-index/tools}"
VENV="$TOOLS_DIR/venv"
# torch as the project pins it (requirements/torch.txt), then the real quantizers and the libraries they
# share from their own lock (requirements/tools-lock.txt, made by `make lock` from tools.in): an unpinned
# transformers once changed what AutoRound stores for an unquantized layer (bfloat16, then float32)
TORCH="$(cat requirements/torch.txt)"
LOCK=requirements/tools-lock.txt
LLAMA_CPP_PYTHON="llama-cpp-python==0.3.36"
STAMP="$VENV/.swi-tools-$(cat requirements/torch.txt "$LOCK" | sha256sum | cut -c1-12)"

log() { echo "tools_venv: $*" >&2; }

mkdir -p "$TOOLS_DIR"
# one builder at a time: a second run waits for the first instead of deleting its work
exec 9>"$TOOLS_DIR/.lock-${1:-all}"
flock 9

if [ ! -f "$STAMP" ]; then
  log "creating $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  # torch first and pinned: an unpinned torch would pull a multi-GB CUDA build
  "$VENV/bin/python" -m pip install --quiet "$TORCH"
  "$VENV/bin/python" -m pip install --quiet "$TORCH" -r "$LOCK"
  touch "$STAMP"
fi

if [ "${1:-all}" = venv ]; then
  echo "$VENV/bin/python"
  exit 0
fi

QUANTIZE="$TOOLS_DIR/llama.cpp/bin/llama-quantize"
if [ ! -x "$QUANTIZE" ]; then
  log "building llama-quantize from the $LLAMA_CPP_PYTHON sdist"
  work="$TOOLS_DIR/llama.cpp/src"
  rm -rf "$work"
  mkdir -p "$work"
  "$VENV/bin/python" -m pip download --quiet --no-deps --no-binary :all: "$LLAMA_CPP_PYTHON" -d "$work"
  tar -xzf "$work"/llama_cpp_python-*.tar.gz -C "$work"
  source_dir="$(ls -d "$work"/llama_cpp_python-*/vendor/llama.cpp)"
  # only what llama-quantize links: the CPU backend without its inference-only kernels (llamafile's
  # sgemm, the repacked Q4_0 layouts), no TLS, tests, examples or server. The quantization arithmetic is
  # ggml's C code (ggml-quants.c), kept at -O2; the C++ around it (model loading, the type mix, and the
  # chat/JSON code llama-common drags in) only sequences tensors, so -O0 is enough and compiles in a
  # fraction of -O3's time (the produced files are the same: no floating point is done in that C++)
  cmake -S "$source_dir" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_FLAGS_RELEASE="-O2 -DNDEBUG" -DCMAKE_CXX_FLAGS_RELEASE="-O0 -DNDEBUG" \
    -DLLAMA_OPENSSL=OFF -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=OFF \
    -DGGML_LLAMAFILE=OFF -DGGML_CPU_REPACK=OFF -DGGML_OPENMP=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
  cmake --build "$work/build" --target llama-quantize -j "${SWI_BUILD_JOBS:-2}" >/dev/null
  mkdir -p "$(dirname "$QUANTIZE")"
  cp "$work/build/bin/llama-quantize" "$QUANTIZE"
  rm -rf "$work"
fi
echo "$VENV/bin/python"
echo "$QUANTIZE"
