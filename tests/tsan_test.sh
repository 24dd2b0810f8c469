#!/bin/sh
# ThreadSanitizer over the thread-safe inference calls: runs
# bin/tsan_test_inference (tests/test_inference.c and the library built
# with -fsanitize=thread by `make bin/tsan_test_inference`). A data race
# makes TSan print a report and exit non-zero, and so this script.
# The test's contexts use one OpenBLAS thread, so OpenBLAS (not
# instrumented) never hands our buffers between threads of its own: no
# suppressions are needed.
set -u
bin=${1:-bin/tsan_test_inference}
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1 second_deadlock_stack=1}"
out=$("$bin" 2>&1)
rc=$?
if [ $rc -ne 0 ] && printf '%s' "$out" | grep -q "unexpected memory mapping"; then
    # GCC 12's TSan cannot map its shadow under the large mmap randomization
    # of newer kernels; the usual remedy is to run without ASLR.
    out=$(setarch "$(uname -m)" -R "$bin" 2>&1)
    rc=$?
fi
printf '%s\n' "$out"
[ $rc -eq 0 ] && echo "tsan_test: clean" || echo "tsan_test: FAILED (exit $rc)"
exit $rc
