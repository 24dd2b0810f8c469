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
[ -f "$tmp/stage/opt/vqj/include/vqjepa.h" ] || fail "DESTDIR not honoured"
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
# The header alone, strictly, as C11 and C++17.
$CC -std=c11 -Wall -Wextra -pedantic -Werror -fsyntax-only -I"$tmp/prefix/include" -x c "$tmp/prefix/include/vqjepa.h"
$CXX -std=c++17 -Wall -Wextra -pedantic -Werror -fsyntax-only -I"$tmp/prefix/include" -x c++ "$tmp/prefix/include/vqjepa.h"

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
