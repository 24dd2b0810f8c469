#!/bin/sh
# `make check-mpi` (and `make check` where mpicc is installed): data-parallel
# training on loopback, `mpirun --oversubscribe -np 2`, against one process
# (docs/distributed.md, "What is tested"):
#   1. bin/mpi/test_mpi: the library's trainer on 2 ranks equals one process
#      on the same global batch (losses within 1e-5 relative over 20 steps),
#      models, codebooks and queues are bit-identical across ranks, and
#      checkpoints resume across rank counts (2 -> 1, 1 -> 2);
#   2. `vqjepa train` under mpirun: the same losses as one process, one
#      progress line a step, one set of run files, and its checkpoint
#      resumes in one process;
#   3. a rank killed mid-run ends the others (no hang), and ranks started
#      with different configurations stop at once with a clear error.
# Skipped (and said so) without Open MPI or the MPI build.
set -u
cd "$(dirname "$0")/../.."
if ! command -v mpirun >/dev/null 2>&1 || ! command -v mpicc >/dev/null 2>&1; then
    echo "check_mpi: Open MPI (mpicc, mpirun) not found: skipped"
    exit 77
fi
if [ ! -x bin/mpi/vqjepa ] || [ ! -x bin/mpi/test_mpi ]; then
    echo "check_mpi: bin/mpi/ not built (make check-mpi builds it): skipped"
    exit 77
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
MPIRUN="mpirun --oversubscribe --bind-to none"
TMP=$(mktemp -d /tmp/vqj-check-mpi.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
fail=0
say() { echo "check_mpi: $*"; }
bad() { echo "check_mpi: FAIL: $*"; fail=1; }

# 1. The library's trainer.
if timeout 600 $MPIRUN -np 2 bin/mpi/test_mpi "$TMP"; then say "test_mpi passed"; else bad "test_mpi"; fi

# 2. The command line: no dropout (masks are drawn per rank), synthetic data.
bin/mpi/vqjepa config | sed 's/relational_dropout: .*/relational_dropout: 0.0/' > "$TMP/nodrop.yaml"
ARGS="--config $TMP/nodrop.yaml --data synthetic --steps 20 --batch 12 --threads 1"
bin/mpi/vqjepa train $ARGS --out "$TMP/one" > "$TMP/one.out" 2> "$TMP/one.err" ||
    bad "one process: $(tail -3 "$TMP/one.err")"
timeout 300 $MPIRUN -np 2 bin/mpi/vqjepa train $ARGS --out "$TMP/two" > "$TMP/two.out" \
    2> "$TMP/two.err" || bad "2 ranks: $(tail -3 "$TMP/two.err")"
python3 - "$TMP/one/loss_metrics.jsonl" "$TMP/two/loss_metrics.jsonl" <<'PY' || fail=1
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
ok = len(a) == len(b) == 20
worst = 0.0
for x, y in zip(a, b):
    for k, v in x["loss"].items():
        w = y["loss"][k]
        e = abs(v - w) / max(abs(v), 1e-3 if k != "total" else 1e-30)
        worst = max(worst, e)
ok = ok and worst <= 1e-5
print("check_mpi: vqjepa train, 1 process vs 2 ranks: %d and %d steps logged, largest "
      "relative loss difference %.2e%s" % (len(a), len(b), worst, "" if ok else ": FAIL"))
sys.exit(0 if ok else 1)
PY
n1=$(grep -c '^\[train\] epoch 1/' "$TMP/one.err")
n2=$(grep -c '^\[train\] epoch 1/' "$TMP/two.err")
[ "$n1" = "$n2" ] && [ "$n2" -ge 1 ] && say "progress lines: $n1 (1 process), $n2 (2 ranks)" ||
    bad "progress lines: $n1 (1 process), $n2 (2 ranks)"
[ "$(grep -c '^report:' "$TMP/two.out")" = 1 ] || bad "2 ranks wrote $(grep -c '^report:' "$TMP/two.out") reports"
bin/mpi/vqjepa train $ARGS --steps 2 --resume "$TMP/two/last.safetensors" --out "$TMP/resumed" \
    --quiet > /dev/null 2> "$TMP/resumed.err" &&
    [ "$(tail -1 "$TMP/resumed/loss_metrics.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["step"])')" = 22 ] &&
    say "the 2-rank checkpoint resumed in one process (steps 21, 22)" ||
    bad "resuming the 2-rank checkpoint: $(tail -3 "$TMP/resumed.err")"

# 3. A rank killed mid-run: the run ends, with mpirun's error, well before the timeout.
start=$(date +%s)
timeout 120 $MPIRUN -np 2 sh -c 'if [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then (sleep 5; kill -9 $$) & fi;
    exec bin/mpi/vqjepa train '"$ARGS"' --steps 100000 --out '"$TMP/killed"' --quiet' \
    > /dev/null 2> "$TMP/killed.err"
rc=$?
secs=$(( $(date +%s) - start ))
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -qi 'signal 9\|killed' "$TMP/killed.err"; then
    say "rank 1 killed: the run ended in ${secs}s with status $rc"
else
    bad "rank 1 killed: status $rc after ${secs}s: $(tail -5 "$TMP/killed.err")"
fi

# 4. Different configurations on the two ranks: a clear error at start.
timeout 120 $MPIRUN -np 1 bin/mpi/vqjepa train $ARGS --seed 1 --out "$TMP/mix" --quiet : \
    -np 1 bin/mpi/vqjepa train $ARGS --seed 2 --out "$TMP/mix" --quiet > /dev/null 2> "$TMP/mix.err"
rc=$?
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q 'differs across ranks' "$TMP/mix.err"; then
    say "mismatched configurations: $(grep -m1 'differs across ranks' "$TMP/mix.err")"
else
    bad "mismatched configurations: status $rc: $(tail -5 "$TMP/mix.err")"
fi
[ $fail = 0 ] && say "passed" || say "FAILED"
exit $fail
