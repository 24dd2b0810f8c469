#!/bin/sh
# The Rust crates (rust/: vqjepa-sys and vqjepa): install the library into a
# temporary prefix with `make install PREFIX=...`, point PKG_CONFIG_PATH
# (which vqjepa-sys's build.rs reads through pkg-config) and LD_LIBRARY_PATH
# there, then `cargo test --offline` (std only, no crate from the network).
# Skipped (exit status 77, which `make check` counts as skipped) with a
# message when cargo is not installed. Run from the
# repository root after `make`.
set -eu
if ! command -v cargo >/dev/null 2>&1; then
    echo "rust_test: cargo not found: skipped"
    exit 77
fi
# rust/Cargo.toml asks for rustc 1.77 or later (std::mem::offset_of!).
rustc_minor=$(rustc --version 2>/dev/null | sed -n 's/^rustc 1\.\([0-9]*\).*/\1/p')
if [ -z "$rustc_minor" ] || [ "$rustc_minor" -lt 77 ]; then
    echo "rust_test: rustc 1.77 or later needed ($(rustc --version 2>/dev/null || echo none)): skipped"
    exit 77
fi
top=$(pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
make -s install PREFIX="$tmp/prefix" >"$tmp/make.log" 2>&1 || {
    cat "$tmp/make.log" >&2
    echo "rust_test: FAIL: make install PREFIX=$tmp/prefix" >&2
    exit 1
}
cd "$top/rust"
PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}" \
LD_LIBRARY_PATH="$tmp/prefix/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
CC="${CC:-cc}" cargo test --offline --quiet 2>&1
