#!/usr/bin/env python3
"""The table of `make bench-quantizers` (docs/benchmarks.md): the JSON lines
of `vqjepa bench --only train_step --phases --json` per file
build/bench-quantizers/NAME.jsonl, the first file the step without VQ.

Whole-step times of separate processes vary by up to 30% on a shared 2-core
VM, more than the costs measured here, so each quantizer's cost is taken
from inside its own run: the time of the codebook's ops (the "codebook"
phase) plus the GEMM work it adds over the step without VQ (its nearest-code
searches and projections, in FLOPs, which do not vary), priced at the step's
own GEMM rate. The cost is given as a share of the step without VQ."""
import json
import os
import sys


def read(path):
    out = {}
    with open(path) as f:
        for line in f:
            if line.startswith("{"):
                r = json.loads(line)
                out[r["what"]] = r
    if "train_step" not in out or "train_step_phases" not in out:
        sys.exit("bench-quantizers: %s needs the train_step and train_step_phases lines" % path)
    return out


def main(paths):
    rows = [(os.path.splitext(os.path.basename(p))[0], read(p)) for p in paths]
    base = rows[0][1]
    base_ph = base["train_step_phases"]
    rate = base_ph["gemm_gflop"] / base_ph["gemm_ms"]  # GFLOP per ms
    step = base["train_step"]["ms_per_step"]
    print("| quantizer | codebook ops, ms | added GEMM, GFLOP | cost, ms | share of the %s step (%.0f ms) |"
          % (rows[0][0], step))
    print("|---|---|---|---|---|")
    for name, r in rows:
        ph = r["train_step_phases"]
        extra = ph["gemm_gflop"] - base_ph["gemm_gflop"]
        cost = ph["codebook_ms"] + extra / rate
        print("| %s | %.1f | %.2f | %.1f | %.1f%% |"
              % (name, ph["codebook_ms"], extra, cost, 100.0 * cost / step))
    print("(batch %d, %d threads; built-in default with each quantizer)"
          % (base["train_step"]["batch"], base["train_step"]["threads"]))


if __name__ == "__main__":
    main(sys.argv[1:])
