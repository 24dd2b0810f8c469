#!/bin/sh
# The library's layers include one way (README.md, "Layout"):
#   core <- device (cuda/ beside it) <- comm <- model <- data <- loss <- train
#   <- eval <- config <- tools
# A file may include its own module's headers and those of the layers below
# it, never above; and only the CPU backend (src/device/cpu*.c) includes its
# private header device/cpu.h. Every `#include "..."` line of src/, cuda/ and
# tools/ is checked; the public headers (include/) may be included anywhere.
# The checker first proves itself on a small tree with a wrong include.
#   sh tests/layering_test.sh [ROOT]
set -eu

rank() {
    case $1 in
    core) echo 0 ;;
    device) echo 10 ;;
    cuda) echo 15 ;;
    comm) echo 20 ;;
    model) echo 30 ;;
    data) echo 40 ;;
    loss) echo 50 ;;
    train) echo 60 ;;
    eval) echo 70 ;;
    config) echo 80 ;;
    tools) echo 90 ;;
    *) echo "" ;;
    esac
}

# check ROOT: print each include that points the wrong way; exit 1 if any.
check() {
    root=$1
    bad=0
    for f in "$root"/src/*/*.c "$root"/src/*/*.h "$root"/cuda/*.cu "$root"/cuda/*.h \
        "$root"/tools/*.c "$root"/tools/*.h; do
        [ -f "$f" ] || continue
        rel=${f#"$root"/}
        case $rel in
        src/*)
            mod=${rel#src/}
            mod=${mod%%/*}
            ;;
        *) mod=${rel%%/*} ;;
        esac
        from=$(rank "$mod")
        if [ -z "$from" ]; then
            echo "$rel: module \"$mod\" has no layer in tests/layering_test.sh"
            bad=1
            continue
        fi
        # `#include "x/y.h"` names module x; a bare "y.h" is the file's own.
        incs=$(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
        for inc in $incs; do
            case $inc in
            */*) to=${inc%%/*} ;;
            *) continue ;;
            esac
            if [ "$inc" = device/cpu.h ]; then
                case $rel in
                src/device/cpu*) ;;
                *)
                    echo "$rel: includes \"$inc\", the CPU backend's private header"
                    bad=1
                    ;;
                esac
                continue
            fi
            [ "$to" = "$mod" ] && continue
            r=$(rank "$to")
            if [ -z "$r" ]; then
                [ -e "$root/include/$inc" ] && continue
                echo "$rel: includes \"$inc\" of no known module"
                bad=1
            elif [ "$r" -gt "$from" ]; then
                echo "$rel: includes \"$inc\": $mod may not include $to (a layer above it)"
                bad=1
            fi
        done
    done
    return $bad
}

root=${1:-$(cd "$(dirname "$0")/.." && pwd)}

# Self-test: the checker must catch a core file including a device header,
# and another module including the CPU backend's header.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/src/core" "$tmp/src/device" "$tmp/src/train"
printf '#include "core/core.h"\n' >"$tmp/src/core/core.h"
printf '#include "core/core.h"\n#include "device/device.h"\n' >"$tmp/src/core/bad.c"
printf '#include "core/core.h"\n' >"$tmp/src/device/device.h"
printf '#include "device/cpu.h"\n' >"$tmp/src/train/bad.c"
if out=$(check "$tmp"); then
    echo "layering_test: the checker passed a tree with wrong includes" >&2
    exit 1
fi
case $out in
*"src/core/bad.c: includes \"device/device.h\""*) ;;
*) echo "layering_test: the checker missed core -> device: $out" >&2; exit 1 ;;
esac
case $out in
*"src/train/bad.c: includes \"device/cpu.h\""*) ;;
*) echo "layering_test: the checker missed train -> device/cpu.h: $out" >&2; exit 1 ;;
esac

if check "$root"; then
    n=$(cat "$root"/src/*/*.[ch] "$root"/cuda/*.cu "$root"/cuda/*.h "$root"/tools/*.c \
        2>/dev/null | grep -c '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' || true)
    echo "layering_test: $n include lines point down the layers"
else
    echo "layering_test: includes point the wrong way (see above)" >&2
    exit 1
fi
