#!/usr/bin/env bash
# The CUDA backend's checks on a machine with a GPU, in one call sized to
# finish in under 8 minutes (docs/perf-cuda.md, "Device check").
#
#   tools/device_check.sh prepare   on the build machine (no GPU needed): run
#                                   tests/test_cuda on the CPU emulation of the
#                                   kernels (cuda/emu/), build with CUDA=1 in a
#                                   scratch copy and pack the programs and the
#                                   non-system libraries they load into
#                                   build/devcheck/devcheck.tar.xz
#   tools/device_check.sh           on the GPU machine, from the repo root
#
# On the GPU machine the programs are built there with `make CUDA=1` when
# nvcc and pkg-config's openblas, jansson, yaml-0.1 and cmocka are present;
# otherwise (or with DEVCHECK_USE_PREPARED=1) the ones `prepare` packed are
# used (carry build/devcheck). Steps,
# most important first, each with a time limit inside DEVCHECK_BUDGET
# (default 460 s): GPU info; build; tests/test_cuda (every op and whole
# training steps against the CPU); compute-sanitizer memcheck (every test
# but the timings) and racecheck (the kernels with shared memory); timings of
# the ops and of training steps at batch 512 (VQJ_CUDA_BENCH=1, or
# `vqjepa bench --device cuda` when the CLI has that option); the PyTorch
# reference on the same card at batch 512, eager and torch.compile
# (tools/reference/bench_ref.py --device cuda [--compile], when python3 has
# PyTorch >= 2.0 with CUDA); `vqjepa train` on the GPU and on the CPU,
# compared. Logs go to $OUT (at most 8 files come back), else
# /tmp/vqj-device-check; the summary and the C-against-PyTorch table
# (tools/bench_table.py) are printed last.
set -u
cd "$(dirname "$0")/.." || exit 1
top=$(pwd)

prepare() {
    local stage out
    prep_tmp=$(mktemp -d) || exit 1
    trap 'rm -rf "$prep_tmp"' EXIT
    local tmp=$prep_tmp
    # The kernels' logic first, on the CPU (cuda/emu/): a bug found here
    # costs no device time.
    echo "device_check prepare: tests/test_cuda on the CUDA emulation (cuda/emu/run_tests.sh)"
    if ! cuda/emu/run_tests.sh >"$tmp/emu.log" 2>&1; then
        grep -E "FAILED|rel err .* > |CUDA emulation:|ERROR" "$tmp/emu.log" | head -20
        echo "device_check prepare: the emulated run failed (log above); fix it first" >&2
        exit 1
    fi
    grep -E '^\[  (PASSED|FAILED) +\]' "$tmp/emu.log"
    echo "device_check prepare: building with CUDA=1 in $tmp"
    git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$tmp"
    if ! make -C "$tmp" -j"$(nproc)" CUDA=1 all bin/test_cuda >"$tmp/build.log" 2>&1; then
        tail -40 "$tmp/build.log"
        echo "device_check prepare: the CUDA=1 build failed" >&2
        exit 1
    fi
    stage="$tmp/stage"
    mkdir -p "$stage/bin" "$stage/deps" "$stage/lib"
    cp "$tmp/bin/test_cuda" "$tmp/bin/vqjepa" "$stage/bin/"
    cp -P "$tmp"/lib/libvqjepa.so* "$stage/lib/" # bench_ref.py's data (ctypes); the CLI links it
    # Libraries a bare machine may lack; the C and C++ runtimes and the
    # CUDA libraries (from the GPU machine's toolkit) stay behind.
    ldd "$stage/bin/test_cuda" "$stage/bin/vqjepa" "$stage/lib/libvqjepa.so" | awk '$3 ~ /^\// {print $3}' | sort -u |
        while read -r lib; do
            case $(basename "$lib") in
            libc.so* | libm.so* | libdl.so* | librt.so* | libpthread.so* | ld-linux* | \
                libstdc++* | libgcc_s* | libcuda* | libcublas*) ;;
            *) cp -L "$lib" "$stage/deps/" ;;
            esac
        done
    out="$top/build/devcheck"
    mkdir -p "$out"
    tar -C "$stage" -cJf "$out/devcheck.tar.xz" .
    echo "device_check prepare: $(du -h "$out/devcheck.tar.xz" | cut -f1) in build/devcheck/devcheck.tar.xz:"
    tar -tJvf "$out/devcheck.tar.xz" | awk '{print "  " $3 "  " $6}'
    echo "run on the GPU machine with carry [\"build/devcheck\"]: tools/device_check.sh"
}

if [ "${1:-}" = "prepare" ]; then
    prepare
    exit 0
fi
if [ $# -gt 0 ]; then
    echo "usage: tools/device_check.sh [prepare]" >&2
    exit 2
fi

OUT=${OUT:-/tmp/vqj-device-check}
mkdir -p "$OUT"
BUDGET=${DEVCHECK_BUDGET:-460}
t_start=$(date +%s)
rows=()

elapsed() { echo $(($(date +%s) - t_start)); }
# A step's limit: its own maximum, cut to what the budget has left.
limit_for() {
    local want=$1 left
    left=$((BUDGET - $(elapsed) - 5))
    [ "$left" -lt "$want" ] && want=$left
    echo "$want"
}
row() { rows+=("$(printf '%-26s %-9s %6s  %s' "$1" "$2" "$3" "$4")"); }

# step NAME MAX_SECONDS LOG NOTE CMD...: run CMD under the time left, log
# appended to $OUT/LOG; sets $step_rc.
step() {
    local name=$1 max=$2 log=$3 note=$4 lim t0 dt status
    shift 4
    lim=$(limit_for "$max")
    if [ "$lim" -lt 15 ]; then
        row "$name" "skipped" "-" "out of time ($BUDGET s budget)"
        step_rc=124
        return
    fi
    echo "== $name (limit ${lim}s): $*" | tee -a "$OUT/$log"
    t0=$(date +%s)
    timeout -k 5 "$lim" "$@" >>"$OUT/$log" 2>&1
    step_rc=$?
    dt=$(($(date +%s) - t0))
    case $step_rc in
    0) status=ok ;;
    124 | 137) status=TIMEOUT ;;
    *) status="FAIL($step_rc)" ;;
    esac
    row "$name" "$status" "${dt}s" "$note"
}

# ---- The GPU ----
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "machine: $(uname -srm), $(nproc) CPUs"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1
    command -v nvcc >/dev/null && nvcc --version | tail -2
    command -v compute-sanitizer >/dev/null && echo "compute-sanitizer: $(command -v compute-sanitizer)"
} >"$OUT/summary.txt" 2>&1
cat "$OUT/summary.txt"
if ! nvidia-smi -L >/dev/null 2>&1; then
    echo "device_check: no GPU here (nvidia-smi -L failed); this script is for the GPU machine." >&2
    echo "  On the build machine run: tools/device_check.sh prepare" >&2
    exit 1
fi
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
# Every test of test_cuda but the timings, for compute-sanitizer memcheck.
MEMCHECK_TESTS=test_memory,test_elementwise,test_reductions,test_gemm,test_bias,test_activations
MEMCHECK_TESTS=$MEMCHECK_TESTS,test_layernorm,test_dropout,test_attention,test_segment_mean
MEMCHECK_TESTS=$MEMCHECK_TESTS,test_l2norm,test_aggregators,test_gru,test_vq,test_fsq
MEMCHECK_TESTS=$MEMCHECK_TESTS,test_vq_rotation,test_optimizer,test_infonce,test_sigreg
MEMCHECK_TESTS=$MEMCHECK_TESTS,test_relational,test_linalg,test_training_step

# ---- The programs: built here, or the prepared ones ----
for d in /usr/local/nvidia/lib64 /usr/local/cuda/lib64; do
    [ -d "$d" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
if command -v nvcc >/dev/null; then
    d=$(dirname "$(dirname "$(command -v nvcc)")")/lib64
    [ -d "$d" ] && export LD_LIBRARY_PATH="$d:$LD_LIBRARY_PATH"
fi
BIN=""
if [ -z "${DEVCHECK_USE_PREPARED:-}" ] && command -v nvcc >/dev/null &&
    pkg-config --exists openblas jansson yaml-0.1 cmocka 2>/dev/null; then
    step "build (make CUDA=1)" 300 build.log "nvcc + cuBLAS here" \
        make -j"$(nproc)" CUDA=1 all bin/test_cuda
    [ "$step_rc" -eq 0 ] && BIN="$top/bin"
elif [ -f build/devcheck/devcheck.tar.xz ]; then
    rm -rf /tmp/devcheck && mkdir -p /tmp/devcheck
    step "unpack prepared build" 60 build.log "build/devcheck (no build deps here)" \
        tar -C /tmp/devcheck -xJf build/devcheck/devcheck.tar.xz
    if [ "$step_rc" -eq 0 ]; then
        BIN=/tmp/devcheck/bin
        export LD_LIBRARY_PATH="/tmp/devcheck/deps:$LD_LIBRARY_PATH"
        ldd "$BIN/test_cuda" | grep "not found" >>"$OUT/build.log"
    fi
else
    row "build" "FAIL" "-" "no build deps here and no build/devcheck: run 'prepare' first"
fi

if [ -n "$BIN" ]; then
    # ---- Parity: every op and whole training steps against the CPU ----
    step "test_cuda (parity)" 200 parity.log "all ops + training steps vs CPU" \
        "$BIN/test_cuda"
    parity=$(grep -E '^\[  (PASSED|FAILED|SKIPPED) +\] [0-9]+ test' "$OUT/parity.log" | tr -s ' ' | tr '\n' ' ')
    rows[${#rows[@]} - 1]="${rows[${#rows[@]} - 1]} | $parity"

    # ---- compute-sanitizer on every op's test and the training step ----
    if command -v compute-sanitizer >/dev/null; then
        VQJ_CUDA_ONLY=$MEMCHECK_TESTS \
            step "memcheck" 150 sanitizer.log "compute-sanitizer --tool memcheck" \
            compute-sanitizer --tool memcheck --leak-check no --error-exitcode 3 "$BIN/test_cuda"
        VQJ_CUDA_ONLY=test_attention,test_layernorm,test_vq,test_sigreg,test_relational,test_infonce \
            step "racecheck" 90 sanitizer.log "compute-sanitizer --tool racecheck" \
            compute-sanitizer --tool racecheck --error-exitcode 3 "$BIN/test_cuda"
    else
        row "compute-sanitizer" "n/a" "-" "not installed"
    fi

    # ---- Timings of the C library: ops, and steps at batch 512 ----
    VQJ_CUDA_BENCH=1 VQJ_CUDA_BENCH_CPU_STEPS=${DEVCHECK_CPU_STEPS:-0} \
        VQJ_CUDA_ONLY=bench_ops,bench_training \
        step "timings (ops, steps)" 150 bench.log "VQJ_CUDA_BENCH=1, batch 512" "$BIN/test_cuda"
    # The step rows as bench JSON lines, for tools/bench_table.py.
    if "$BIN/vqjepa" bench --help 2>&1 | grep -q -- '--device'; then
        for v in core full; do
            step "vqjepa bench --device cuda ($v)" 90 cli_bench.log "train_step, batch 512" \
                sh -c "'$BIN/vqjepa' bench --only train_step --device cuda --variant $v \
                    --batch 512 --steps 5 --warmup 2 --json >>'$OUT/steps.jsonl'"
        done
    else
        row "vqjepa bench --device" "n/a" "-" "no --device in this CLI: C rows from test_cuda (synthetic seed 9)"
        sed -n 's/.*BENCH train_step \([a-z]*\) *cuda *batch \([0-9]*\): *\([0-9.]*\) ms\/step *\([0-9.]*\) samples\/s.*/{"what":"train_step","impl":"c","variant":"\1","batch":\2,"threads":0,"ms_per_step":\3,"samples_per_s":\4,"device":"cuda"}/p' \
            "$OUT/bench.log" >>"$OUT/steps.jsonl"
    fi

    # ---- The PyTorch reference on the same card: eager, then torch.compile ----
    if python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() and hasattr(torch, "compile") else 1)' 2>/dev/null; then
        lib="$top/lib/libvqjepa.so"
        [ -f "$lib" ] || lib=/tmp/devcheck/lib/libvqjepa.so
        for mode in eager compile; do
            flag=""
            [ $mode = compile ] && flag="--compile"
            for v in core full; do
                step "pytorch $mode ($v)" 150 pytorch.log "bench_ref.py --device cuda, batch 512" \
                    sh -c "python3 tools/reference/bench_ref.py --device cuda $flag --variant $v \
                        --batch 512 --steps 3 --warmup 2 --json --lib '$lib' >>'$OUT/steps.jsonl'"
            done
        done
    else
        row "pytorch reference" "n/a" "-" "no PyTorch >= 2.0 with CUDA for python3 here"
    fi

    # ---- The CLI end to end: a short run on the GPU, the same on the CPU ----
    tmp=$(mktemp -d)
    printf 'training:\n  device: cuda\n' >"$tmp/cuda.yaml"
    printf 'training:\n  device: cpu\n' >"$tmp/cpu.yaml"
    for dev in cuda cpu; do
        step "vqjepa train ($dev)" 60 train.log "--steps 4 --batch 64" \
            "$BIN/vqjepa" train --config "$tmp/$dev.yaml" --steps 4 --batch 64 \
            --out "$tmp/run-$dev" --quiet
    done
    if [ -f "$tmp/run-cuda/loss_metrics.jsonl" ] && [ -f "$tmp/run-cpu/loss_metrics.jsonl" ]; then
        python3 - "$tmp/run-cuda/loss_metrics.jsonl" "$tmp/run-cpu/loss_metrics.jsonl" \
            >>"$OUT/train.log" 2>&1 <<'PY'
import json, sys
rows = []
for path in sys.argv[1:]:
    with open(path) as f:
        rows.append([json.loads(l) for l in f if l.strip()])
g, c = rows
print("step  total(cuda)     total(cpu)      rel diff")
worst = 0.0
for a, b in zip(g, c):
    x, y = a["loss"]["total"], b["loss"]["total"]
    d = abs(x - y) / max(abs(y), 1e-30)
    worst = max(worst, d)
    print(f"{a['step']:4d}  {x:<15.8g} {y:<15.8g} {d:.2e}")
note = " - identical: the 'cuda' run ran on the CPU (the CLI does not pass training.device to its context yet)" if worst == 0.0 else " (expect < 1e-3)"
print(f"worst relative difference of the total loss: {worst:.2e}{note}")
PY
        row "train cuda vs cpu" "info" "-" "$(tail -1 "$OUT/train.log")"
    fi
    rm -rf "$tmp"
fi

# ---- Summary, last ----
{
    echo
    echo "== key numbers"
    grep -h "BENCH train_step" "$OUT/bench.log" 2>/dev/null | sed 's/^ *//'
    grep -h "BENCH gemm qkv\|BENCH attention\|BENCH vq_assign\|BENCH infonce\|BENCH adam\|BENCH empty\|BENCH host" \
        "$OUT/bench.log" 2>/dev/null | sed 's/^ *//'
    grep -h "FAILED\|rel err .*> \|ERROR SUMMARY" "$OUT/parity.log" "$OUT/sanitizer.log" 2>/dev/null | head -20
    if [ -s "$OUT/steps.jsonl" ]; then
        echo
        echo "== training steps at batch 512 on $gpu: C against the PyTorch reference"
        python3 tools/bench_table.py "$OUT/steps.jsonl" 2>&1
    fi
    echo
    echo "== device check on $gpu, $(elapsed) s of a $BUDGET s budget (logs in $OUT)"
    printf '%-26s %-9s %6s  %s\n' "step" "status" "time" "note"
    for r in "${rows[@]}"; do echo "$r"; done
} | tee -a "$OUT/summary.txt"
for r in "${rows[@]}"; do
    case $r in *FAIL* | *TIMEOUT*) exit 1 ;; esac
done
exit 0
