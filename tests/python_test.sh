#!/bin/sh
# The Python package (python/): its unittest suite against the built library,
# under every interpreter at hand (`python3` and Debian's /usr/bin/python3
# when they differ; PYTHON=... picks one), with numpy when the interpreter
# has it and again without (VQJEPA_NUMPY=0), then `pip install ./python`
# into a temporary target against an installed copy of the library, found
# through pkg-config. Run from the repository root after `make`.
set -eu
top=$(pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
passed=0
failed=0
fail() { echo "python_test: FAIL: $*" >&2; failed=$((failed + 1)); }
ok() { passed=$((passed + 1)); }

# Distinct interpreters (by their real path).
if [ -n "${PYTHON:-}" ]; then
    candidates=$PYTHON
else
    candidates="python3 /usr/bin/python3"
fi
pythons=""
seen=""
for p in $candidates; do
    command -v "$p" >/dev/null 2>&1 || continue
    real=$("$p" -c 'import os, sys; print(os.path.realpath(sys.executable))' 2>/dev/null) || continue
    case " $seen " in *" $real "*) continue ;; esac
    seen="$seen $real"
    pythons="$pythons $p"
done
[ -n "$pythons" ] || { echo "python_test: FAIL: no python3 found" >&2; exit 1; }

run_suite() { # python, label, extra env assignment
    py=$1
    label=$2
    shift 2
    echo "-- $py ($label)"
    if env "$@" VQJEPA_LIBRARY="$top/lib/libvqjepa.so" VQJEPA_INCLUDE="$top/include" \
        PYTHONPATH="$top/python" PYTHONDONTWRITEBYTECODE=1 \
        "$py" -m unittest discover -s "$top/python/tests" -t "$top/python/tests" 2>&1; then
        ok
    else
        fail "unittest under $py ($label)"
    fi
}

for py in $pythons; do
    has_numpy=$("$py" -c 'import numpy; print(1)' 2>/dev/null || echo 0)
    has_st=$("$py" -c 'import safetensors; print(1)' 2>/dev/null || echo 0)
    [ "$has_st" = 1 ] || echo "python_test: note: $py has no safetensors package (PyPI): the checkpoint cross-check is skipped there"
    if [ "$has_numpy" = 1 ]; then
        run_suite "$py" "numpy" VQJEPA_NUMPY=1
        run_suite "$py" "without numpy" VQJEPA_NUMPY=0
    else
        run_suite "$py" "no numpy installed" VQJEPA_NUMPY=1
    fi
done

# `pip install ./python` against an installed library, found by pkg-config.
py=$(echo $pythons | awk '{print $1}')
if ! "$py" -m pip --version >/dev/null 2>&1; then
    echo "python_test: note: $py has no pip: the pip install check is skipped"
elif ! make -s install PREFIX="$tmp/prefix" >"$tmp/make.log" 2>&1; then
    cat "$tmp/make.log" >&2
    fail "make install PREFIX=$tmp/prefix"
else
    cp -R "$top/python" "$tmp/src"   # the build must not litter the checkout
    rm -rf "$tmp/src/build" "$tmp/src/"*.egg-info
    # Offline when setuptools can build a wheel by itself, else pip fetches
    # the build requirements (setuptools) from PyPI.
    if "$py" -m pip install -q --no-build-isolation --no-deps --target "$tmp/site" "$tmp/src" \
        >"$tmp/pip.log" 2>&1 ||
        "$py" -m pip install -q --no-deps --target "$tmp/site" "$tmp/src" >>"$tmp/pip.log" 2>&1; then
        out=$(cd "$tmp" && env -u VQJEPA_LIBRARY -u LD_LIBRARY_PATH PYTHONPATH="$tmp/site" \
            PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig" "$py" -m vqjepa --version --library 2>&1) || true
        echo "$out"
        case "$out" in
        *"$tmp/prefix/lib/libvqjepa.so"*"vqjepa 0"*) ok ;;
        *) fail "the pip-installed package did not load the installed library: $out" ;;
        esac
        if (cd "$tmp" && env -u VQJEPA_LIBRARY -u LD_LIBRARY_PATH PYTHONPATH="$tmp/site" \
            PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig" "$py" -c '
import vqjepa
with vqjepa.Context() as ctx:
    t = ctx.tokenize([[[2, 2, 0], [2, 2, 1]]])
    assert t.num_objects == 2, t.num_objects
'); then ok; else fail "the pip-installed package cannot tokenize"; fi
    else
        cat "$tmp/pip.log" >&2
        fail "pip install ./python"
    fi
fi

echo "python_test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
