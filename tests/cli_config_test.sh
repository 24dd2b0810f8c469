#!/bin/sh
# `vqjepa config`: the printed YAML reads back to itself, reference configs
# load with warnings on stderr, and a bad file exits 2 naming FILE:LINE.
# Run from the repository root after `make` (make check does both).
set -eu
VQJEPA=${VQJEPA:-bin/vqjepa}
REFS=${VQJ_REFERENCE_CONFIGS:-../shared/reference-configs}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
fail() { echo "cli_config_test: FAIL: $*" >&2; exit 1; }
passed=0
ok() { passed=$((passed + 1)); }

# The defaults print as YAML that --config of itself reproduces, silently.
"$VQJEPA" config > "$tmp/a.yaml" 2> "$tmp/a.err" || fail "vqjepa config failed: $(cat "$tmp/a.err")"
[ ! -s "$tmp/a.err" ] || fail "the defaults gave messages: $(cat "$tmp/a.err")"
grep -q '^  hidden_dim: 128$' "$tmp/a.yaml" || fail "no object_encoder hidden_dim 128 in the built-in default"
# builtin:gentle is the library's defaults, the seed's gentle run.
"$VQJEPA" config --config builtin:gentle > "$tmp/g.yaml" 2> "$tmp/g.err" || fail "builtin:gentle failed: $(cat "$tmp/g.err")"
grep -q '^  hidden_dim: 384$' "$tmp/g.yaml" || fail "no object_encoder hidden_dim 384 in builtin:gentle"
grep -q '^  vq_path: straight_through$' "$tmp/g.yaml" || fail "builtin:gentle does not keep the original's straight-through codes"
if "$VQJEPA" config --config builtin:nothing > /dev/null 2> "$tmp/n.err"; then fail "an unknown built-in configuration was accepted"; fi
grep -q "builtin:gentle" "$tmp/n.err" || fail "the unknown built-in's message does not name the known ones: $(cat "$tmp/n.err")"
grep -q '^  commitment_cost: 0.15$' "$tmp/a.yaml" || fail "no commitment_cost 0.15 in the defaults"
"$VQJEPA" config --config "$tmp/a.yaml" > "$tmp/b.yaml" 2> "$tmp/b.err" \
    || fail "config --config of its own output failed: $(cat "$tmp/b.err")"
[ ! -s "$tmp/b.err" ] || fail "its own output gave warnings: $(cat "$tmp/b.err")"
cmp -s "$tmp/a.yaml" "$tmp/b.yaml" || fail "config --config of its own output differs: $(diff "$tmp/a.yaml" "$tmp/b.yaml")"
ok

# A reference config loads; its values show; unimplemented keys are named on
# stderr with FILE:LINE; the output reads back to itself.
if [ -f "$REFS/jepa_pretrain_a6000.yaml" ]; then
    "$VQJEPA" config --config "$REFS/jepa_pretrain_a6000.yaml" > "$tmp/r.yaml" 2> "$tmp/r.err" \
        || fail "the a6000 reference config failed: $(cat "$tmp/r.err")"
    grep -q '^  commitment_cost: 0.3$' "$tmp/r.yaml" || fail "commitment_cost 0.3 not resolved"
    grep -q '^  vq_refresh_interval: 500$' "$tmp/r.yaml" || fail "vq_refresh_interval 500 not resolved"
    grep -q 'jepa_pretrain_a6000.yaml:37: key model.type is not implemented and is ignored' "$tmp/r.err" \
        || fail "no warning for model.type: $(cat "$tmp/r.err")"
    grep -q 'pre_tokenized.drop_last is not implemented' "$tmp/r.err" || fail "no warning for pre_tokenized"
    "$VQJEPA" config --config "$tmp/r.yaml" > "$tmp/r2.yaml" 2> "$tmp/r2.err" || fail "re-reading failed"
    cmp -s "$tmp/r.yaml" "$tmp/r2.yaml" || fail "the resolved a6000 config does not read back to itself"
    ok
fi

# An invalid value: exit 2, FILE:LINE and the allowed range; nothing on stdout.
printf 'training:\n  batch_size: 64\n  epochs: 0\n' > "$tmp/bad.yaml"
set +e
"$VQJEPA" config --config "$tmp/bad.yaml" > "$tmp/bad.out" 2> "$tmp/bad.err"
rc=$?
set -e
[ "$rc" -eq 2 ] || fail "an invalid value gave exit status $rc, expected 2"
grep -q "bad.yaml:3: training.epochs is 0; it must be in \[1, 1000000\]" "$tmp/bad.err" \
    || fail "unexpected message: $(cat "$tmp/bad.err")"
[ ! -s "$tmp/bad.out" ] || fail "output printed for a bad file"
# Malformed YAML: exit 2 with FILE:LINE:COLUMN; a missing file: exit 2.
printf 'data:\n  context_window: [3\n' > "$tmp/broken.yaml"
set +e
"$VQJEPA" config --config "$tmp/broken.yaml" > /dev/null 2> "$tmp/broken.err"
rc=$?
"$VQJEPA" config --config "$tmp/missing.yaml" > /dev/null 2> "$tmp/missing.err"
rc2=$?
set -e
[ "$rc" -eq 2 ] || fail "malformed YAML gave exit status $rc, expected 2"
grep -q "broken.yaml:[0-9]*:[0-9]*: " "$tmp/broken.err" || fail "no FILE:LINE:COLUMN: $(cat "$tmp/broken.err")"
[ "$rc2" -eq 2 ] || fail "a missing file gave exit status $rc2, expected 2"
grep -q "missing.yaml" "$tmp/missing.err" || fail "a missing file is not named"
ok

echo "cli_config_test: $passed passed, 0 failed"
