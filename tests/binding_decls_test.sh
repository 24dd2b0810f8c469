#!/bin/sh
# The bindings' function declarations (Python's ctypes prototypes, the Rust
# -sys crate's extern block) against the prototypes of include/vqjepa*.h:
# tests/binding_decls.py. Run from the repository root after `make`.
set -eu
if ! command -v python3 >/dev/null 2>&1; then
    echo "binding_decls_test: SKIPPED: no python3"
    exit 77
fi
exec python3 tests/binding_decls.py .
