#!/bin/sh
# Install what building and testing libvqjepa needs, from Debian's packages,
# on Debian 12 or later: `sh tools/install-deps.sh`. As root it installs;
# otherwise it runs itself again through sudo (a fresh machine where you are
# root often has no sudo, and one where you are not needs it).
# (clang: the libFuzzer harnesses of tests/fuzz/; valgrind: docs/failures.md.)
set -eu
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo sh "$0" "$@"
    fi
    echo "install-deps: run this as root (there is no sudo to become root)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
    build-essential pkg-config python3 \
    libopenblas-dev libcmocka-dev libjansson-dev libyaml-dev zlib1g-dev \
    libopenmpi-dev openmpi-bin \
    chromium doxygen clang valgrind \
    python3-numpy python3-pip python3-setuptools python3-wheel

# The Python binding's tests (tests/python_test.sh) open a checkpoint with
# PyPI's safetensors package, which Debian does not package: install it for
# each Python the tests use (Debian's refuses pip without
# --break-system-packages, PEP 668). Without it that one check is skipped.
for py in python3 /usr/bin/python3; do
    command -v "$py" >/dev/null 2>&1 || continue
    "$py" -c 'import safetensors' 2>/dev/null && continue
    "$py" -m pip install --quiet safetensors 2>/dev/null ||
        "$py" -m pip install --quiet --break-system-packages safetensors ||
        echo "install-deps: warning: could not install safetensors for $py" >&2
done
