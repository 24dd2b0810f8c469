#!/bin/sh
# The libFuzzer harnesses of tests/fuzz/ run once over each committed
# corpus file (regression mode: seconds). `make check` builds them when
# clang is installed; without them this test says SKIPPED. Run from the
# repository root; `make fuzz FUZZ_SECONDS=N` fuzzes for real.
set -eu
names="arc jsonl config checkpoint tokenizer"
for n in $names; do
    if [ ! -x "bin/fuzz_$n" ]; then
        echo "fuzz_test: SKIPPED (bin/fuzz_$n not built: clang missing? tools/install-deps.sh installs it)"
        exit 77
    fi
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
total=0
for n in $names; do
    files=$(find "tests/fuzz/corpus/$n" -type f | sort)
    count=$(echo "$files" | wc -l)
    # shellcheck disable=SC2086
    if ! "./bin/fuzz_$n" -timeout=20 -rss_limit_mb=2048 $files > "$tmp/$n.log" 2>&1; then
        tail -40 "$tmp/$n.log" >&2
        echo "fuzz_test: FAIL: fuzz_$n crashed on its corpus" >&2
        exit 1
    fi
    total=$((total + count))
done
echo "fuzz_test: $total corpus files through 5 harnesses: ok"
