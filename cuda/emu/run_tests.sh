#!/usr/bin/env bash
# Build tests/test_cuda with the CUDA backend compiled for the CPU emulation
# of cuda/emu/emu.h (no GPU, no nvcc needed) and run it: every kernel's logic
# against the CPU backend, before a GPU session spends device time on it.
# Launches `k<<<cfg>>>(args)` are rewritten to EMU_LAUNCH(k, cfg)(args) in a
# scratch copy; the sources themselves are not changed.
#   cuda/emu/run_tests.sh                        all of tests/test_cuda.c
#   VQJ_CUDA_ONLY=test_vq cuda/emu/run_tests.sh  one entry
#   EMU_ASAN=1 cuda/emu/run_tests.sh             with AddressSanitizer: a
#                                                kernel reading or writing past
#                                                a device buffer is reported
set -eu
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
read -ra dep_cflags <<<"$(pkg-config --cflags openblas jansson yaml-0.1 zlib)"
read -ra dep_libs <<<"$(pkg-config --libs openblas jansson yaml-0.1 zlib cmocka)"
cflags=(-O2 -g -std=c11 -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L -DVQJ_WITH_CUDA
    -Iinclude -Isrc "${dep_cflags[@]}")
cxxflags=(-O2 -g -std=c++20 -Wall -Wextra -Werror -Wno-unknown-pragmas -DVQJ_WITH_CUDA
    -Icuda/emu/include -Icuda -Iinclude -Isrc "${dep_cflags[@]}")
if [ -n "${EMU_ASAN:-}" ]; then
    cflags+=(-fsanitize=address -fno-omit-frame-pointer)
    cxxflags+=(-fsanitize=address -fno-omit-frame-pointer)
    dep_libs+=(-fsanitize=address)
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:detect_stack_use_after_return=0}
fi
for f in cuda/*.cu; do
    python3 -c '
import re, sys
s = open(sys.argv[1]).read()
print(re.sub(r"(\w+)<<<(.*?)>>>", r"EMU_LAUNCH(\1, \2)", s, flags=re.S))' "$f" \
        >"$tmp/$(basename "$f" .cu).cc"
done
pids=()
for f in src/*/*.c; do
    cc "${cflags[@]}" -c "$f" -o "$tmp/$(echo "$f" | tr / _).o" &
    pids+=($!)
done
for f in "$tmp"/*.cc; do
    g++ "${cxxflags[@]}" -c "$f" -o "${f%.cc}.o" &
    pids+=($!)
done
g++ "${cxxflags[@]}" -c cuda/emu/emu.cpp -o "$tmp/emu.o" &
pids+=($!)
cc "${cflags[@]}" -c tests/test_cuda.c -o "$tmp/test_cuda.o" &
pids+=($!)
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=1; done
[ "$failed" -eq 0 ] || { echo "cuda/emu/run_tests.sh: the build failed" >&2; exit 1; }
g++ -o "$tmp/test_cuda" "$tmp"/*.o "${dep_libs[@]}" -lm -lpthread
echo "emulated CUDA backend built; running tests/test_cuda"
"$tmp/test_cuda"
