#!/bin/sh
# The example programs, in the order an agent's life runs them: train and
# save, load and encode, act on ARC tasks; and the stage-by-stage trainer.
set -eu
ARC_DATA=${VQJ_ARC_DATA:-../shared/data/arc-agi-1/data/training}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
fail() { echo "examples_test: FAIL: $*" >&2; exit 1; }
passed=0

bin/example_train_stages > "$tmp/stages.out" || fail "train_stages: $(tail -2 "$tmp/stages.out")"
grep -q '^bit-identical$' "$tmp/stages.out" || fail "stage path differs from the one-call step"
passed=$((passed + 1))

bin/example_train_checkpoint "$tmp/model.safetensors" 10 > "$tmp/train.out" || fail "train_checkpoint"
[ -s "$tmp/model.safetensors" ] || fail "no checkpoint written"
grep -q "^checkpoint: $tmp/model.safetensors$" "$tmp/train.out" || fail "train_checkpoint output"
passed=$((passed + 1))

if [ -d "$ARC_DATA" ]; then
    tasks=$ARC_DATA
else
    mkdir "$tmp/tasks"
    printf '%s' '{"train":[{"input":[[1,0],[0,2]],"output":[[0,1],[2,0]]}],"test":[{"input":[[3,0],[0,4]],"output":[[0,3],[4,0]]}]}' \
        > "$tmp/tasks/flip.json"
    tasks=$tmp/tasks
fi
bin/example_encode_tasks "$tmp/model.safetensors" "$tasks" 20 > "$tmp/encode.out" || fail "encode_tasks"
grep -Eq '^[0-9]+ tasks, [0-9]+ grids, [0-9]+ objects, [0-9]+ of [0-9]+ codes used$' "$tmp/encode.out" \
    || fail "encode_tasks summary: $(tail -1 "$tmp/encode.out")"
passed=$((passed + 1))

bin/example_agent "$tmp/model.safetensors" "$tasks" > "$tmp/agent.out" || fail "agent"
grep -Eq '^tasks [0-9]+: agent solved [0-9]+ \([0-9.]+%\), identity [0-9]+, oracle over the 8 candidates [0-9]+$' \
    "$tmp/agent.out" || fail "agent summary: $(cat "$tmp/agent.out")"
if [ "$tasks" = "$ARC_DATA" ]; then
    grep -q '^tasks 400:' "$tmp/agent.out" || fail "agent did not see the 400 training tasks"
fi
cat "$tmp/agent.out"
passed=$((passed + 1))
echo "examples_test: $passed passed, 0 failed"
