#!/bin/sh
# Crash safety (docs/failures.md): a small training run is killed with
# SIGKILL at random moments, KILLS times (default 50), each time resumed
# from the newest last.safetensors. After every kill the checkpoint loads
# and the run goes on from it, and no file under a final name in the run
# folder is partial (temporary files are named NAME.tmp.XXXXXX). Run from
# the repository root; tools/crash_soak.sh runs it with more kills.
set -eu
VQJEPA=${VQJEPA:-bin/vqjepa}
KILLS=${KILLS:-50}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
fail() { echo "crash_test: FAIL: $*" >&2; exit 1; }
cat > "$tmp/tiny.yaml" <<'Y'
synthetic:
  num_examples: 200
tokenizer:
  max_objects: 16
object_encoder:
  hidden_dim: 16
  num_embeddings: 16
  relational_layers: 1
  relational_heads: 2
model:
  projection_dim: 16
training:
  batch_size: 8
  grad_accum_steps: 1
  epochs: 1000
  checkpoint_steps: 1
  checkpoint_interval: 2
  early_stopping:
    enabled: false # the run must still be going when it is killed
loss:
  queue_size: 32
diagnostics:
  embedding_metrics:
    interval: 5
Y
run="$tmp/run"
ck="$run/last.safetensors"
# Whole files only: every JSONL line parses, config.yaml is whole, and every
# checkpoint under its final name loads (vqjepa eval reads it end to end).
# A kill may cut the write of a log's last line (a write crossing a page is
# not atomic for SIGKILL); the next run cuts that unfinished line, so after
# a run that ends by itself ("final") every log ends with a whole line.
check_folder() {
    for f in "$run"/*.jsonl; do
        [ -e "$f" ] || continue
        python3 -c 'import json,sys
lines = open(sys.argv[1]).read().split("\n")
for l in lines[:-1]:
    json.loads(l)
sys.exit(1 if lines[-1] and sys.argv[2] == "final" else 0)
' "$f" "$1" || fail "kill $1: $f has a partial line"
    done
    if [ -e "$run/config.yaml" ]; then
        "$VQJEPA" config --config "$run/config.yaml" > /dev/null 2>&1 ||
            fail "kill $1: config.yaml is partial"
    fi
}
# The seed for the random delays; printed, so a failure can be replayed.
seed=${CRASH_SEED:-$$}
echo "crash_test: $KILLS kills, seed $seed"
awk -v n="$KILLS" -v s="$seed" 'BEGIN { srand(s); for (i = 0; i < n; i++) printf "%.3f\n", rand() * 0.4 }' \
    > "$tmp/delays"
k=0
resumed=0
last_step=0
while read -r delay; do
    k=$((k + 1))
    resume=""
    [ -e "$ck" ] && resume="--resume $ck"
    : > "$tmp/err" # now, not when the background job gets to it
    # shellcheck disable=SC2086
    "$VQJEPA" train --config "$tmp/tiny.yaml" --data synthetic --out "$run" --threads 1 $resume \
        > "$tmp/out" 2> "$tmp/err" &
    pid=$!
    # Every fifth kill lands during start-up; the others wait until the run
    # trains (its resume line, or a first checkpoint), so that a slow,
    # loaded machine still kills runs at random moments of training.
    if [ $((k % 5)) -ne 0 ]; then
        waited=0
        until grep -q "resumed from" "$tmp/err" 2>/dev/null || { [ -z "$resume" ] && [ -e "$ck" ]; }; do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.02
            waited=$((waited + 1))
            [ "$waited" -lt 6000 ] || fail "kill $k: the run did not start training in 120 s"
        done
    fi
    sleep "$delay"
    kill -9 "$pid" 2>/dev/null || true
    st=0
    wait "$pid" 2> /dev/null || st=$?
    # 137: killed. Anything else means the run ended on its own: a failure.
    [ "$st" -eq 137 ] || { cat "$tmp/err" >&2; fail "kill $k: the run exited $st before the kill"; }
    check_folder "$k"
    # The temporary files of killed runs do not pile up: each run removes
    # the ones it finds.
    n=$(find "$run" -name '*.tmp.*' | wc -l)
    [ "$n" -le 2 ] || fail "kill $k: $n temporary files left"
    if [ -n "$resume" ]; then
        # The resumed run's position never goes backwards.
        step=$(sed -n 's/.*resumed from .* step \([0-9]*\)$/\1/p' "$tmp/err")
        [ -n "$step" ] || [ $((k % 5)) -eq 0 ] || { cat "$tmp/err" >&2; fail "kill $k: no resume line"; }
        if [ -n "$step" ]; then
            [ "$step" -ge "$last_step" ] || fail "kill $k: resumed at step $step after $last_step"
            last_step=$step
            resumed=$((resumed + 1))
        fi
    fi
done < "$tmp/delays"
# The newest checkpoint loads and the run goes on from it; its step never
# goes backwards.
[ -e "$ck" ] || fail "no last.safetensors after $KILLS kills"
"$VQJEPA" train --config "$tmp/tiny.yaml" --data synthetic --out "$run" --threads 1 --quiet --resume "$ck" \
    --steps 2 > /dev/null 2> "$tmp/err" || { cat "$tmp/err" >&2; fail "the final resume failed"; }
check_folder final
[ -z "$(find "$run" -name '*.tmp.*')" ] || fail "temporary files left after the final run"
[ "$last_step" -gt 2 ] || fail "the runs made no progress (step $last_step)"
# An unfinished last line, as a kill in the middle of its write leaves it:
# the next run cuts it (and says so) before it appends.
printf '{"step": 99999, "loss": {"to' >> "$run/loss_metrics.jsonl"
"$VQJEPA" train --config "$tmp/tiny.yaml" --data synthetic --out "$run" --threads 1 --resume "$ck" \
    --steps 1 > /dev/null 2> "$tmp/err" || { cat "$tmp/err" >&2; fail "the run after a torn line failed"; }
grep -q "cut the unfinished last line of 1 log in" "$tmp/err" || { cat "$tmp/err" >&2; fail "a torn line was not cut"; }
check_folder final
# A full disk under the run's logs (/dev/full as loss_metrics.jsonl): the
# run stops with the system's reason, and last.safetensors is untouched.
cp "$ck" "$tmp/before.safetensors"
rm -f "$run/loss_metrics.jsonl"
ln -s /dev/full "$run/loss_metrics.jsonl"
st=0
"$VQJEPA" train --config "$tmp/tiny.yaml" --data synthetic --out "$run" --threads 1 --quiet \
    --resume "$ck" --steps 3 > /dev/null 2> "$tmp/err" || st=$?
[ "$st" -eq 1 ] || { cat "$tmp/err" >&2; fail "a full disk under the logs gave exit $st, not 1"; }
grep -q "loss_metrics.jsonl: No space left on device" "$tmp/err" ||
    { cat "$tmp/err" >&2; fail "a full disk was not reported"; }
cmp -s "$ck" "$tmp/before.safetensors" || fail "the failed run changed last.safetensors"
# The other steps of an atomic write fail (tests/fault_inject.c, an
# LD_PRELOAD library): creating the temporary file, fsyncing it or renaming
# it, for one file of the run folder at a time. The run stops with exit 1
# and the system's reason for that file; the file under its final name is
# the previous one, byte for byte; no temporary file is left. A folder that
# cannot be synced after the rename is reported the same way.
shim=${FAULT_SHIM:-bin/fault_inject.so}
[ -e "$shim" ] || fail "no $shim (make bin/fault_inject.so)"
case $shim in /*) ;; *) shim="$PWD/$shim" ;; esac
rm -f "$run/loss_metrics.jsonl"
"$VQJEPA" train --config "$tmp/tiny.yaml" --data synthetic --out "$run" --threads 1 --quiet \
    --resume "$ck" --steps 2 > /dev/null 2> "$tmp/err" || { cat "$tmp/err" >&2; fail "a run before the faults failed"; }
faults=0
for f in config.yaml last.safetensors eval.json report.html; do
    [ -e "$run/$f" ] || fail "the run wrote no $f"
    for op in create fsync rename; do
        cp "$run/$f" "$tmp/before"
        st=0
        VQJ_FAULT="$op:$f" LD_PRELOAD="$shim" "$VQJEPA" train --config "$tmp/tiny.yaml" \
            --data synthetic --out "$run" --threads 1 --quiet --resume "$ck" --steps 2 \
            > /dev/null 2> "$tmp/err" || st=$?
        [ "$st" -eq 1 ] || { cat "$tmp/err" >&2; fail "$op failing for $f gave exit $st, not 1"; }
        grep -q "$f: Input/output error" "$tmp/err" ||
            { cat "$tmp/err" >&2; fail "$op failing for $f was not reported"; }
        cmp -s "$run/$f" "$tmp/before" || fail "$op failing for $f changed $f"
        [ -z "$(find "$run" -name '*.tmp.*')" ] || fail "$op failing for $f left a temporary file"
        faults=$((faults + 1))
    done
done
st=0
VQJ_FAULT="syncdir:$run:ENOSPC" LD_PRELOAD="$shim" "$VQJEPA" train --config "$tmp/tiny.yaml" \
    --data synthetic --out "$run" --threads 1 --quiet --resume "$ck" --steps 2 > /dev/null \
    2> "$tmp/err" || st=$?
[ "$st" -eq 1 ] && grep -q "config.yaml but cannot sync its folder: No space left on device" "$tmp/err" ||
    { cat "$tmp/err" >&2; fail "a folder that cannot be synced gave exit $st"; }
check_folder faults
"$VQJEPA" train --config "$tmp/tiny.yaml" --data synthetic --out "$run" --threads 1 --quiet \
    --resume "$ck" --steps 1 > /dev/null 2> "$tmp/err" || { cat "$tmp/err" >&2; fail "no resume after the faults"; }
echo "crash_test: $faults injected create/fsync/rename faults, each leaving the previous file"
# A checkpoint whose run metadata is out of range (run.epoch -7) is refused
# before the number is used.
python3 - "$ck" "$tmp/bad.safetensors" <<'PY'
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
h['__metadata__']['run.epoch'] = '-7'
t = json.dumps(h).encode()
t += b' ' * (-len(t) % 8)
open(sys.argv[2], 'wb').write(struct.pack('<Q', len(t)) + t + b[8 + n:])
PY
st=0
"$VQJEPA" train --config "$tmp/tiny.yaml" --data synthetic --out "$tmp/badrun" --threads 1 --quiet \
    --resume "$tmp/bad.safetensors" --steps 1 > /dev/null 2> "$tmp/err" || st=$?
[ "$st" -eq 1 ] && grep -q 'metadata run.epoch is "-7"; it must be an integer in \[0, 1000000\]' "$tmp/err" ||
    { cat "$tmp/err" >&2; fail "a checkpoint with run.epoch -7 gave exit $st"; }
[ "$resumed" -ge $((KILLS * 2 / 3)) ] || fail "only $resumed of $KILLS runs resumed"
echo "crash_test: $KILLS kills, $resumed resumed from last.safetensors (last at step $last_step): ok"
