#!/bin/sh
# `vqjepa train`, `monitor`, `report`, `encode` and `ablate` end to end on
# small runs: the run folder, an exact resume, Ctrl-C, the reference
# configurations, the health checks and the report page (rendered in
# headless Chromium when it is installed). Run from the repository root.
set -eu
VQJEPA=${VQJEPA:-bin/vqjepa}
CONFIGS=${VQJ_REFERENCE_CONFIGS:-../shared/reference-configs}
ARC_DATA=${VQJ_ARC_DATA:-../shared/data/arc-agi-1/data/training}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
fail() { echo "cli_train_test: FAIL: $*" >&2; exit 1; }
passed=0
ok() { passed=$((passed + 1)); }
small="--batch 8 --threads 1 --quiet"

# 1. A short run writes the whole run folder.
# shellcheck disable=SC2086
"$VQJEPA" train --steps 3 $small --out "$tmp/a" > "$tmp/a.out" || fail "train failed"
for f in config.yaml loss_metrics.jsonl epoch_metrics.jsonl embedding_metrics.jsonl \
         last.safetensors report.html; do
    [ -s "$tmp/a/$f" ] || fail "train did not write $f"
done
grep -q "^report: $tmp/a/report.html$" "$tmp/a.out" || fail "train did not say where the report is"
grep -q "Evaluation on the validation split" "$tmp/a/report.html" || fail "the report has no evaluation"
python3 - "$tmp/a" <<'PY' || fail "the JSONL files are not what docs/diagnostics.md says"
import json, sys, os
d = sys.argv[1]
rows = lambda n: [json.loads(l) for l in open(os.path.join(d, n))]
loss = rows("loss_metrics.jsonl")
assert [r["step"] for r in loss] == [1, 2, 3], loss
for r in loss:
    assert set(r["loss"]) >= {"total", "infonce", "relational", "commitment", "sigreg"}
    assert r["lr"] is not None and r["grad_norm"] is not None
    share = r["loss_share"]
    assert abs(sum(share.values()) - 1) < 1e-4, share
    assert abs(share["commitment"] - r["loss"]["commitment"] / r["loss"]["total"]) < 1e-6, r
emb = rows("embedding_metrics.jsonl")[-1]
for side in ("context", "target"):
    assert emb[side]["effective_rank"] > 0 and emb[side]["samples"] >= 2, emb
assert 0 < emb["vq_usage_ratio"] <= 1 and emb["vq_active_codes"] >= 1, emb
# Usage counts context and target codes; perplexity and dead codes of the
# same window, and of the validation split.
assert max(emb["vq_usage_context"], emb["vq_usage_target"]) <= emb["vq_usage_ratio"], emb
assert 1 <= emb["vq_perplexity"] <= emb["vq_active_codes"], emb
K = int(next(l.split(":")[1] for l in open(os.path.join(d, "config.yaml"))
             if l.strip().startswith("num_embeddings:")))
assert emb["vq_dead_codes"] + emb["vq_active_codes"] == K, emb
assert emb["val_vq_dead_codes"] < K and emb["val_vq_perplexity"] >= 1, emb
assert emb["partial"] is True and emb["window_steps"] == 3, emb
ep = rows("epoch_metrics.jsonl")[-1]
assert ep["partial"] is True and ep["val_loss"] > 0, ep
PY
ok

# 1b. Diagnostic windows are a fixed number of steps, not cut at epoch ends
# (3 steps an epoch here, windows of 2); the run's last window is marked.
cat > "$tmp/win.yaml" <<'Y'
synthetic:
  num_examples: 60
training:
  grad_accum_steps: 2
diagnostics:
  embedding_metrics:
    interval: 2
Y
# shellcheck disable=SC2086
"$VQJEPA" train --config "$tmp/win.yaml" --steps 7 $small --out "$tmp/w" > /dev/null \
    || fail "train with short windows failed"
python3 - "$tmp/w/embedding_metrics.jsonl" <<'PY' || fail "diagnostic windows are uneven"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
got = [(r["step"], r["window_steps"], r["partial"]) for r in rows]
assert got == [(2, 2, False), (4, 2, False), (6, 2, False), (7, 1, True)], got
PY
ok

# 2. Resuming is exact: 2 + 2 steps give the checkpoint of 4 steps, byte for byte.
# shellcheck disable=SC2086
"$VQJEPA" train --steps 4 $small --out "$tmp/r4" > /dev/null || fail "train 4 failed"
# shellcheck disable=SC2086
"$VQJEPA" train --steps 2 $small --out "$tmp/r2" > /dev/null || fail "train 2 failed"
# shellcheck disable=SC2086
"$VQJEPA" train --steps 2 $small --out "$tmp/r2" --resume "$tmp/r2/last.safetensors" > /dev/null \
    || fail "resume failed"
cmp -s "$tmp/r4/last.safetensors" "$tmp/r2/last.safetensors" \
    || fail "4 steps and 2 + resume + 2 steps differ"
ok

# 3. Ctrl-C writes a checkpoint and exits with 130.
# shellcheck disable=SC2086
"$VQJEPA" train --steps 100000 $small --out "$tmp/int" > /dev/null 2>&1 &
pid=$!
i=0
while [ ! -s "$tmp/int/loss_metrics.jsonl" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
kill -INT $pid
set +e; wait $pid; rc=$?; set -e
[ "$rc" -eq 130 ] || fail "Ctrl-C gave exit status $rc, expected 130"
[ -s "$tmp/int/last.safetensors" ] || fail "Ctrl-C left no checkpoint"
ok

# 4. The reference system's configurations run unchanged (their dataset is
# not here: synthetic data, with a warning), naming what is not implemented.
if [ -d "$CONFIGS" ]; then
    for c in "$CONFIGS"/*.yaml; do
        name=$(basename "$c" .yaml)
        # shellcheck disable=SC2086
        "$VQJEPA" train --config "$c" --steps 1 $small --out "$tmp/ref-$name" \
            > /dev/null 2> "$tmp/ref-$name.err" || fail "$c does not train: $(cat "$tmp/ref-$name.err")"
        grep -q "not implemented" "$tmp/ref-$name.err" || fail "$c: no warning for unimplemented keys"
    done
    ok
else
    echo "cli_train_test: $CONFIGS absent: reference configurations not tried"
fi

# 5. monitor: a healthy-looking run is not an alert; a collapsed one is.
set +e; "$VQJEPA" monitor "$tmp/a" > "$tmp/mon.out"; rc=$?; set -e
for check in vq_usage vq_perplexity vq_dead_codes val_vq_perplexity val_vq_dead_codes; do
    grep -Eq "^(ok|warn|alert) +$check: " "$tmp/mon.out" || fail "monitor printed no $check line"
done
[ "$rc" -le 2 ] || fail "monitor exit status $rc"
mkdir "$tmp/bad"
printf '%s\n' '{"step":10,"epoch":16,"context":{"effective_rank":1.5},"target":{"effective_rank":3.0},"vq_usage_ratio":0.04,"vq_active_codes":40,"vq_perplexity":12.0,"vq_dead_codes":960}' \
    > "$tmp/bad/embedding_metrics.jsonl"
for e in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do
    printf '{"epoch":%d,"val_loss":%d.0}\n' $e $((5 + e)) >> "$tmp/bad/epoch_metrics.jsonl"
done
set +e; "$VQJEPA" monitor "$tmp/bad" > "$tmp/bad.out"; rc=$?; set -e
[ "$rc" -eq 2 ] || fail "monitor of a collapsed run gave $rc, expected 2"
for check in vq_usage context_rank target_rank val_loss_trend abort_vq_collapse abort_embedding_collapse \
             vq_perplexity vq_dead_codes; do
    grep -Eq "^alert +$check: " "$tmp/bad.out" || fail "monitor did not alert on $check: $(cat "$tmp/bad.out")"
done
ok

# 6. report: a page with the eight plots, each drawn.
"$VQJEPA" report "$tmp/a" -o "$tmp/page.html" > /dev/null || fail "report failed"
for id in loss vq_usage vq_perplexity vq_dead_codes effective_rank temperature grad_norm lr; do
    grep -q "<svg id=\"$id\"" "$tmp/page.html" || fail "report has no $id plot"
done
[ "$(grep -c '<polyline class="series"' "$tmp/page.html")" -ge 7 ] || fail "report plots have no lines"
chrome=$(command -v chromium || command -v chromium-browser || true)
if [ -n "$chrome" ]; then
    timeout 120 "$chrome" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
        --dump-dom "file://$tmp/page.html" > "$tmp/dom.html" 2> "$tmp/chrome.err" \
        || fail "chromium could not render the report: $(tail -3 "$tmp/chrome.err")"
    [ "$(grep -o '<svg id=' "$tmp/dom.html" | wc -l)" -eq 8 ] || fail "chromium's DOM lacks the eight plots"
    timeout 120 "$chrome" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
        --window-size=1400,1000 --screenshot="$tmp/page.png" "file://$tmp/page.html" \
        > /dev/null 2>&1 || fail "chromium could not screenshot the report"
    [ -s "$tmp/page.png" ] || fail "no screenshot"
    ok
else
    echo "cli_train_test: chromium not installed: the report was not rendered"
fi

# 7. encode: codes and an embedding for every grid of a task.
cat > "$tmp/task.json" <<'J'
{"train": [{"input": [[1, 1, 0], [0, 0, 2]], "output": [[3, 0], [0, 3]]}],
 "test": [{"input": [[0, 0], [0, 0]]}]}
J
"$VQJEPA" encode --checkpoint "$tmp/a/last.safetensors" "$tmp/task.json" > "$tmp/enc.jsonl" \
    || fail "encode failed"
python3 - "$tmp/enc.jsonl" <<'PY' || fail "encode output is wrong"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["index"] for r in rows] == [0, 1, 2], rows
assert [len(r["codes"]) for r in rows] == [2, 2, 0], [r["codes"] for r in rows]
assert rows[0]["embedding"] and all(len(r["embedding"]) == len(rows[0]["embedding"]) for r in rows)
n = sum(x * x for x in rows[0]["embedding"]) ** 0.5
assert abs(n - 1) < 1e-4, n
PY
set +e; "$VQJEPA" encode --checkpoint "$tmp/nope.safetensors" "$tmp/task.json" 2>/dev/null; rc=$?; set -e
[ "$rc" -eq 2 ] || fail "encode with a missing checkpoint gave $rc, expected 2"
ok

# 7b. eval: retrieval, codes and baselines as one JSON line, or a table.
mkdir -p "$tmp/tasks"
cp "$tmp/task.json" "$tmp/tasks/a.json"
cat > "$tmp/tasks/b.json" <<'J'
{"train": [{"input": [[1, 0], [0, 1]], "output": [[1, 1], [1, 1]]},
           {"input": [[2, 0, 0]], "output": [[2, 2, 2]]}],
 "test": [{"input": [[3]], "output": [[3]]}]}
J
"$VQJEPA" eval --checkpoint "$tmp/a/last.safetensors" --data "$tmp/tasks" --json --threads 1 \
    > "$tmp/eval.json" || fail "eval failed"
python3 - "$tmp/eval.json" <<'PY' || fail "eval JSON is wrong"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 1, lines
r = json.loads(lines[0])
for k in ("retrieval_top1", "retrieval_top5", "retrieval_chance", "retrieval_hard_top1",
          "baseline_init_top1", "baseline_features_top1", "baseline_analogy_top1",
          "baseline_init_hard_top1", "baseline_features_hard_top1",
          "baseline_analogy_hard_top1", "code_usage", "code_perplexity", "pairs", "objects",
          "seconds"):
    assert k in r, k
assert r["pairs"] == 4 and r["candidates"] == 4 and abs(r["retrieval_chance"] - 0.25) < 1e-9, r
assert r["objects"] > 0 and 0 < r["code_usage"] <= 1, r
PY
"$VQJEPA" eval --checkpoint "$tmp/a/last.safetensors" --data "$tmp/tasks" --threads 1 \
    > "$tmp/eval.txt" || fail "eval (table) failed"
grep -q "^analogy " "$tmp/eval.txt" || fail "eval table has no analogy row"
set +e; "$VQJEPA" eval --checkpoint "$tmp/a/last.safetensors" --data "$tmp/none" 2>/dev/null
rc=$?; set -e
[ "$rc" -eq 2 ] || fail "eval of missing data gave $rc, expected 2"
ok

# 8. ablate: the seed's four variants and every quantizer, one column each,
# a report each, measured by eval (here on the small task folder).
# shellcheck disable=SC2086
"$VQJEPA" ablate --steps 1 $small --out "$tmp/abl" --eval-data "$tmp/tasks" > "$tmp/abl.out" \
    || fail "ablate failed"
for col in "Sixth Run (VQ+Refresh)" "No VQ" "VQ No Refresh" "VQ Gentle" "Base (F)" \
           "Cosine codes" "32-dim lookup" "SimVQ" "FSQ 8-5-5-5" "Rotation trick + dead-code" \
           "Residual 2 levels" "Grouped 2 groups"; do
    grep -qF "$col" "$tmp/abl/ablation.md" || fail "ablation table has no column $col"
done
for row in "Steps Completed" "Final Val Loss" "Final Val InfoNCE" "Context Eff. Rank (End)" \
           "VQ Usage (Minimum)" "VQ Usage (Min. after warmup)" "VQ Perplexity (End)" \
           "Most codes re-seeded" "Retrieval top-1" "Retrieval hard top-1"; do
    grep -qF "$row" "$tmp/abl/ablation.md" || fail "ablation table has no row $row"
done
grep -q "features" "$tmp/abl/ablation.md" || fail "ablation table does not name the baselines"
for v in vq_refresh no_vq vq_no_refresh vq_gentle base cosine code_dim_32 simvq fsq residual \
    grouped; do
    [ -s "$tmp/abl/$v/report.html" ] || fail "ablate wrote no report for $v"
done
grep -F "VQ Usage (End)" "$tmp/abl/ablation.md" | grep -q "n/a" || fail "the no-VQ column should have no usage"
# --variants: only the named columns; an unknown name is refused
# shellcheck disable=SC2086
"$VQJEPA" ablate --steps 1 $small --out "$tmp/abl2" --eval-data "$tmp/tasks" \
    --variants residual,fsq > "$tmp/abl2.out" || fail "ablate --variants failed"
grep -qF "Residual 2 levels" "$tmp/abl2/ablation.md" || fail "--variants lost a column"
! grep -qF "Cosine codes" "$tmp/abl2/ablation.md" || fail "--variants kept an unnamed column"
[ ! -e "$tmp/abl2/base" ] || fail "--variants ran an unnamed variant"
set +e; "$VQJEPA" ablate --variants nope > /dev/null 2>&1; rc=$?; set -e
[ "$rc" -eq 2 ] || fail "ablate --variants nope gave $rc, expected 2"
ok

echo "cli_train_test: $passed passed, 0 failed"
