#!/bin/sh
# The `vqjepa` program: tokenize output, bad files, --version. Run from the
# repository root after `make` (make check does both).
set -eu
VQJEPA=${VQJEPA:-bin/vqjepa}
ARC_DATA=${VQJ_ARC_DATA:-../shared/data/arc-agi-1/data/training}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
fail() { echo "cli_test: FAIL: $*" >&2; exit 1; }
passed=0
ok() { passed=$((passed + 1)); }

# --version ends with the library's version; --help lists the commands.
ver=$(sed -n 's/^#define VQJ_VERSION_MAJOR \([0-9]*\)/\1/p; s/^#define VQJ_VERSION_MINOR \([0-9]*\)/\1/p; s/^#define VQJ_VERSION_PATCH \([0-9]*\)/\1/p' include/vqjepa.h | paste -sd. -)
[ "$("$VQJEPA" --version)" = "vqjepa $ver" ] || fail "--version printed '$("$VQJEPA" --version)', expected 'vqjepa $ver'"
ok
"$VQJEPA" --help | grep -q tokenize || fail "--help does not list tokenize"
set +e; "$VQJEPA" no-such-command >/dev/null 2>&1; rc=$?; set -e
[ "$rc" -eq 2 ] || fail "an unknown command gave exit status $rc, expected 2"
ok

# A small task: 2 train pairs and a test pair without output = 5 grids.
cat > "$tmp/small.json" <<'J'
{"train": [{"input": [[1, 1, 0], [0, 0, 2]], "output": [[3]]},
           {"input": [[0, 0], [0, 0]], "output": [[4, 0, 4]]}],
 "test": [{"input": [[5, 5], [5, 0]]}]}
J
"$VQJEPA" tokenize "$tmp/small.json" > "$tmp/out.jsonl" || fail "tokenize small.json failed"
[ "$(wc -l < "$tmp/out.jsonl")" -eq 5 ] || fail "expected 5 lines, got $(wc -l < "$tmp/out.jsonl")"
python3 - "$tmp/out.jsonl" <<'PY' || fail "tokenize output is not what the task implies"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert [l["task"] for l in lines] == ["small"] * 5
assert [l["index"] for l in lines] == [0, 1, 2, 3, 4]
for l in lines:
    assert len(l["features"]) == 16 and all(len(r) == 23 for r in l["features"])
    assert len(l["mask"]) == 16 and len(l["adjacency"]) == 16
    assert all(len(r) == 16 for r in l["adjacency"])
# objects per grid: two (a domino of 1 then the 2), one, none, two 4s, one L of 5s
assert [sum(l["mask"]) for l in lines] == [2, 1, 0, 2, 1], [sum(l["mask"]) for l in lines]
f = lines[0]["features"][0]
assert f[0] == 2 / 6 or abs(f[0] - 2 / 6) < 1e-7, f   # area / (H*W)
assert f[6] == 1 and f[5] == 1                         # dominant color, distinct colors
assert lines[0]["features"][1][6] == 2
assert lines[0]["adjacency"][0][1] == 1 and lines[0]["adjacency"][0][0] == 0
assert lines[2]["features"] == [[0] * 23] * 16          # empty grid: all padding
assert lines[3]["adjacency"][0][1] == 0                 # 4 . 4: a column between
assert lines[4]["features"][0][0] == 0.75
PY
ok

# Tokenizer options: the cap, connectivity and color slots; a bad value is
# refused with status 2.
"$VQJEPA" tokenize --max-objects 1 --max-color-features 0 --connectivity 8 "$tmp/small.json" \
    > "$tmp/opt.jsonl" || fail "tokenize with options failed"
python3 - "$tmp/opt.jsonl" <<'PY' || fail "tokenize options were not applied"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert all(len(l["mask"]) == 1 and len(l["features"][0]) == 13 for l in lines)
assert [sum(l["mask"]) for l in lines] == [1, 1, 0, 1, 1], [l["mask"] for l in lines]
PY
set +e; "$VQJEPA" tokenize --max-objects 0 "$tmp/small.json" > /dev/null 2> "$tmp/opt.err"; rc=$?; set -e
[ "$rc" -eq 2 ] && grep -q "max-objects 0" "$tmp/opt.err" || fail "--max-objects 0 gave $rc"
ok

# A malformed file: status 2, a message with the file and line:column, and
# the other files are still processed.
printf '{"train": [\n  {"input": [[1]] "output": [[2]]}\n]}\n' > "$tmp/bad.json"
set +e
"$VQJEPA" tokenize "$tmp/small.json" "$tmp/bad.json" "$tmp/small.json" > "$tmp/out2.jsonl" 2> "$tmp/err.txt"
rc=$?
set -e
[ "$rc" -eq 2 ] || fail "a malformed file gave exit status $rc, expected 2"
grep -q "bad.json:2:[0-9]" "$tmp/err.txt" || fail "stderr lacks bad.json:LINE:COLUMN: $(cat "$tmp/err.txt")"
[ "$(wc -l < "$tmp/err.txt")" -eq 1 ] || fail "expected one error line: $(cat "$tmp/err.txt")"
[ "$(wc -l < "$tmp/out2.jsonl")" -eq 10 ] || fail "the good files around the bad one were not all printed"
ok
# A bad grid names the pair; a missing file names the file.
printf '{"train": [{"input": [[1, 2], [3]], "output": [[2]]}]}' > "$tmp/ragged.json"
set +e
"$VQJEPA" tokenize "$tmp/ragged.json" "$tmp/missing.json" > "$tmp/out3.jsonl" 2> "$tmp/err3.txt"
rc=$?
set -e
[ "$rc" -eq 2 ] || fail "a ragged grid gave exit status $rc, expected 2"
grep -q "ragged.json: train pair 0 input: row 1 has 1 cells, expected 2" "$tmp/err3.txt" \
    || fail "unexpected message: $(cat "$tmp/err3.txt")"
grep -q "missing.json" "$tmp/err3.txt" || fail "a missing file is not named"
[ ! -s "$tmp/out3.jsonl" ] || fail "output printed for bad files"
ok

# A real task, if the data set is there: every line parses.
if [ -d "$ARC_DATA" ]; then
    task=$(ls "$ARC_DATA"/*.json | head -n 1)
    "$VQJEPA" tokenize "$task" > "$tmp/real.jsonl" || fail "tokenize $task failed"
    python3 - "$task" "$tmp/real.jsonl" <<'PY' || fail "real task output does not parse"
import json, sys
task = json.load(open(sys.argv[1]))
n = sum(1 + ("output" in p) for s in ("train", "test") for p in task.get(s, []))
lines = [json.loads(l) for l in open(sys.argv[2])]
assert len(lines) == n, (len(lines), n)
assert all(sum(l["mask"]) >= 1 for l in lines)
PY
    ok
    "$VQJEPA" bench --data "$ARC_DATA" --only tokenizer --repeat 1 --json | python3 -c '
import json, sys
r = json.loads(sys.stdin.readline())
assert r["what"] == "tokenizer" and r["grids"] > 0 and r["us_per_grid"] > 0, r' \
        || fail "bench --json output"
    ok
fi
# Training steps of the reference configuration, tiny batch: one JSON line
# per variant (docs/benchmarks.md).
"$VQJEPA" bench --only train_step --batch 4 --steps 1 --warmup 0 --json 2>/dev/null | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin]
assert [r["variant"] for r in rows] == ["core", "full"], rows
for r in rows:
    assert r["what"] == "train_step" and r["impl"] == "c" and r["batch"] == 4, r
    assert r["threads"] >= 1 and r["ms_per_step"] > 0 and r["samples_per_s"] > 0, r
    assert r["max_rss_mib"] > 0, r' || fail "bench --only train_step --json output"
ok
# --device: cpu runs; cuda in a build without it is bad input (exit 2)
# with a message, for every command that takes it.
if [ "$(cat build/.flavor 2>/dev/null)" != cuda1 ]; then
    for cmd in "train --steps 1 --batch 4 --threads 1 --quiet --out $tmp/dev" \
               "bench --only train_step --steps 1 --warmup 0 --batch 4" \
               "encode --checkpoint $tmp/none.safetensors" \
               "eval --checkpoint $tmp/none.safetensors"; do
        # shellcheck disable=SC2086
        set +e; "$VQJEPA" $cmd --device cuda "$tmp/small.json" > /dev/null 2> "$tmp/dev.err"
        rc=$?; set -e
        [ "$rc" -eq 2 ] || fail "${cmd%% *} --device cuda gave exit status $rc, expected 2"
        grep -q "no CUDA backend" "$tmp/dev.err" || fail "${cmd%% *} --device cuda: $(cat "$tmp/dev.err")"
    done
    ok
fi
set +e; "$VQJEPA" train --device tpu --steps 1 > /dev/null 2> "$tmp/dev.err"; rc=$?; set -e
[ "$rc" -eq 2 ] && grep -q "use cpu or cuda" "$tmp/dev.err" || fail "--device tpu gave $rc"
"$VQJEPA" train --device cpu --data synthetic --steps 1 --batch 4 --threads 1 --quiet \
    --out "$tmp/devcpu" > /dev/null || fail "train --device cpu failed"
grep -q "device: cpu" "$tmp/devcpu/config.yaml" || fail "the run's config.yaml does not say device: cpu"
ok
# A configuration far beyond the machine is refused before it is allocated:
# exit 2, the estimate and the limit named.
printf 'object_encoder:\n  hidden_dim: 16384\ntraining:\n  batch_size: 1048576\n' > "$tmp/huge.yaml"
set +e; "$VQJEPA" train --config "$tmp/huge.yaml" --data synthetic --steps 1 --threads 1 --quiet \
    --out "$tmp/huge" > /dev/null 2> "$tmp/huge.err"; rc=$?; set -e
[ "$rc" -eq 2 ] || fail "a huge configuration gave exit status $rc, expected 2: $(cat "$tmp/huge.err")"
grep -q "the configuration needs about .* GB, more than the limit of" "$tmp/huge.err" \
    || fail "huge configuration: $(cat "$tmp/huge.err")"
set +e; VQJEPA_MEMORY_LIMIT=1k "$VQJEPA" train --data synthetic --steps 1 --batch 4 --threads 1 \
    --quiet --out "$tmp/tiny" > /dev/null 2> "$tmp/tiny.err"; rc=$?; set -e
[ "$rc" -eq 2 ] && grep -q "(VQJEPA_MEMORY_LIMIT)" "$tmp/tiny.err" \
    || fail "VQJEPA_MEMORY_LIMIT=1k gave exit status $rc: $(cat "$tmp/tiny.err")"
# --batch is applied to the configuration before the estimate: a batch that
# the limit cannot hold is refused (exit 2) before anything is allocated or
# written, and one outside training.batch_size's range is refused as such.
set +e; VQJEPA_MEMORY_LIMIT=64G "$VQJEPA" train --data synthetic --steps 1 --batch 1048576 \
    --threads 1 --quiet --out "$tmp/bigbatch" > /dev/null 2> "$tmp/bigbatch.err"; rc=$?; set -e
[ "$rc" -eq 2 ] && grep -q "more than the limit of 68.7 GB (VQJEPA_MEMORY_LIMIT)" "$tmp/bigbatch.err" \
    && grep -q "batch 1048576 x" "$tmp/bigbatch.err" \
    || fail "--batch 1048576 under a 64G limit gave exit status $rc: $(cat "$tmp/bigbatch.err")"
[ ! -e "$tmp/bigbatch" ] || fail "--batch 1048576 was refused only after writing $tmp/bigbatch"
set +e; "$VQJEPA" train --data synthetic --steps 1 --batch 2000000 --quiet --out "$tmp/bigbatch" \
    > /dev/null 2> "$tmp/bigbatch.err"; rc=$?; set -e
[ "$rc" -eq 2 ] && grep -q "training.batch_size is 2000000; it must be in \[1, 1048576\]" "$tmp/bigbatch.err" \
    || fail "--batch 2000000 gave exit status $rc: $(cat "$tmp/bigbatch.err")"
ok
echo "cli_test: $passed passed, 0 failed"
