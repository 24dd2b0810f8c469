#!/bin/sh
# Install into a temporary prefix, then build programs the way users do:
# through pkg-config, from C (shared and static) and C++, and the README's
# usage example. Also checks the ABI surface: SONAME and exported symbols.
set -eu
CC=${CC:-cc}
CXX=${CXX:-c++}
top=$(pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
fail() { echo "install_test: FAIL: $*" >&2; exit 1; }

make -s install PREFIX="$tmp/prefix" >/dev/null
make -s install PREFIX=/opt/vqj DESTDIR="$tmp/stage" >/dev/null
for h in vqjepa.h vqjepa_stages.h vqjepa.hpp; do
    [ -f "$tmp/stage/opt/vqj/include/$h" ] || fail "DESTDIR not honoured ($h)"
done
grep -q '^prefix=/opt/vqj$' "$tmp/stage/opt/vqj/lib/pkgconfig/vqjepa.pc" || fail ".pc prefix wrong under DESTDIR"

lib="$tmp/prefix/lib"
for f in libvqjepa.so libvqjepa.so.0 libvqjepa.a pkgconfig/vqjepa.pc; do
    [ -e "$lib/$f" ] || fail "$lib/$f missing"
done
readelf -d "$lib/libvqjepa.so" | grep -q 'SONAME.*\[libvqjepa\.so\.0\]' || fail "SONAME is not libvqjepa.so.0"
bad=$(nm -D --defined-only "$lib/libvqjepa.so" | awk '$2 ~ /[TDBR]/ {print $3}' | grep -v '^vqj_' | grep -v '^VQJEPA_' || true)
[ -z "$bad" ] || fail "symbols exported without the vqj_ prefix: $bad"
nm -D --defined-only "$lib/libvqjepa.so" | grep -q ' vqj_version' || fail "vqj_version not exported"
nm -D --defined-only "$lib/libvqjepa.so" | grep -q 'vqji_' && fail "internal vqji_ symbols exported"

# The two tiers (docs/api-conventions.md): every function of vqjepa.h is
# exported in the VQJEPA_0 version node, every function of vqjepa_stages.h
# in VQJEPA_STAGES_*, and nothing else is exported.
fns() { sed -n 's/^VQJ_API[^(]*[ *]\(vqj_[a-z0-9_]*\) *(.*/\1/p' "$1" | sort; }
fns "$tmp/prefix/include/vqjepa.h" > "$tmp/stable.txt"
fns "$tmp/prefix/include/vqjepa_stages.h" > "$tmp/stages.txt"
[ -s "$tmp/stable.txt" ] && [ -s "$tmp/stages.txt" ] || fail "no functions found in the headers"
objdump -T "$lib/libvqjepa.so" | awk '$NF ~ /^vqj_/ && $4 == ".text" {print $(NF-1), $NF}' \
    | sed 's/^(*\([A-Z0-9_.]*\))*/\1/' | sort -k2 > "$tmp/exported.txt"
awk '$1 == "VQJEPA_0" {print $2}' "$tmp/exported.txt" > "$tmp/exported_stable.txt"
awk '$1 ~ /^VQJEPA_STAGES_/ {print $2}' "$tmp/exported.txt" > "$tmp/exported_stages.txt"
cmp -s "$tmp/stable.txt" "$tmp/exported_stable.txt" || \
    fail "VQJEPA_0 exports differ from vqjepa.h's functions: $(diff "$tmp/stable.txt" "$tmp/exported_stable.txt" | grep '^[<>]' | head -5 | tr '\n' ' ')"
cmp -s "$tmp/stages.txt" "$tmp/exported_stages.txt" || \
    fail "VQJEPA_STAGES_ exports differ from vqjepa_stages.h's functions: $(diff "$tmp/stages.txt" "$tmp/exported_stages.txt" | grep '^[<>]' | head -5 | tr '\n' ' ')"
[ "$(wc -l < "$tmp/exported.txt")" -eq "$(cat "$tmp/stable.txt" "$tmp/stages.txt" | wc -l)" ] || \
    fail "functions exported in neither tier: $(awk '$1 != "VQJEPA_0" && $1 !~ /^VQJEPA_STAGES_/' "$tmp/exported.txt" | head -5 | tr '\n' ' ')"

# The CLI links the shared library, the installed one once installed.
loaded=$(ldd "$tmp/prefix/bin/vqjepa" | awk '$1 == "libvqjepa.so.0" {print $3}')
[ -n "$loaded" ] && [ "$(realpath "$loaded")" = "$(realpath "$lib/libvqjepa.so.0")" ] \
    || fail "the installed vqjepa does not load the installed libvqjepa.so.0 (it loads '$loaded')"
"$tmp/prefix/bin/vqjepa" --version >/dev/null || fail "the installed vqjepa does not run"

export PKG_CONFIG_PATH="$lib/pkgconfig"
[ "$(pkg-config --modversion vqjepa)" = "$("$top/bin/vqjepa" --version | awk '{print $NF}')" ] \
    || fail "pkg-config version differs from the library's"

cat > "$tmp/prog.c" <<'C'
#include <vqjepa.h>
#include <stdio.h>
#include <string.h>
int main(void)
{
    vqj_context_params p;
    vqj_context_params_default(&p);
    vqj_context *ctx = NULL;
    if (vqj_context_create(&p, &ctx) != VQJ_OK) {
        fprintf(stderr, "%s\n", vqj_last_error());
        return 1;
    }
    printf("%s\n", vqj_version());
    vqj_context_destroy(ctx);
    return strcmp(vqj_version(), "") == 0;
}
C
# Each header alone, strictly, as C11 and C++17.
for h in vqjepa.h vqjepa_stages.h; do
    $CC -std=c11 -Wall -Wextra -pedantic -Werror -fsyntax-only -I"$tmp/prefix/include" -x c "$tmp/prefix/include/$h"
    $CXX -std=c++17 -Wall -Wextra -pedantic -Werror -fsyntax-only -I"$tmp/prefix/include" -x c++ "$tmp/prefix/include/$h"
done

# shellcheck disable=SC2046
$CC -std=c11 -Wall -Wextra -pedantic -Werror -o "$tmp/prog" "$tmp/prog.c" $(pkg-config --cflags --libs vqjepa)
LD_LIBRARY_PATH="$lib" "$tmp/prog" >/dev/null || fail "program linked through pkg-config failed"
ldd_out=$(LD_LIBRARY_PATH="$lib" ldd "$tmp/prog")
echo "$ldd_out" | grep -q "$lib/libvqjepa.so.0" || fail "program did not load the installed library"

# shellcheck disable=SC2046
$CC -std=c11 -o "$tmp/prog_static" "$tmp/prog.c" $(pkg-config --cflags vqjepa) "$lib/libvqjepa.a" $(pkg-config --static --libs vqjepa | sed 's/-lvqjepa//')
"$tmp/prog_static" >/dev/null || fail "statically linked program failed"

cp "$tmp/prog.c" "$tmp/prog.cpp"
# shellcheck disable=SC2046
$CXX -std=c++17 -Wall -Wextra -pedantic -Werror -o "$tmp/prog_cxx" "$tmp/prog.cpp" $(pkg-config --cflags --libs vqjepa)
LD_LIBRARY_PATH="$lib" "$tmp/prog_cxx" >/dev/null || fail "C++ program failed"

# The README's usage example compiles and runs against the installed library.
awk '/^```c$/ {on=1; next} /^```$/ {if (on) exit} on' "$top/README.md" > "$tmp/readme.c"
[ -s "$tmp/readme.c" ] || fail "README.md has no \`\`\`c usage example"
# shellcheck disable=SC2046
$CC -std=c11 -Wall -Wextra -Werror -o "$tmp/readme" "$tmp/readme.c" $(pkg-config --cflags --libs vqjepa)
# It loads a checkpoint: one optimizer step of a small model.
LD_LIBRARY_PATH="$lib" "$top/bin/vqjepa" train --data synthetic --steps 1 --batch 4 --threads 1 \
    --quiet --out "$tmp/run" >/dev/null || fail "cannot train the README example's checkpoint"
LD_LIBRARY_PATH="$lib" "$tmp/readme" "$tmp/run/last.safetensors" >"$tmp/readme.out" \
    || fail "README example failed"
grep -q '^object 0: code [0-9]' "$tmp/readme.out" || fail "README example printed no code"
LD_LIBRARY_PATH="$lib" "$tmp/readme" "$tmp/none.safetensors" 2>/dev/null \
    && fail "README example succeeded without a checkpoint"
echo "install_test: 1 passed, 0 failed"
