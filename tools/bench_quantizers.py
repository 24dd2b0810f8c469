#!/usr/bin/env python3
"""The table of `make bench-quantizers` (docs/benchmarks.md): one JSON line
of `vqjepa bench --only train_step --json` per file build/bench-quantizers/
NAME.jsonl, the first file the step without VQ; prints each quantizer's
time per step and its cost relative to that step."""
import json
import os
import sys


def main(paths):
    rows = []
    for p in paths:
        with open(p) as f:
            line = next((x for x in f if x.startswith("{")), None)
        if line is None:
            sys.exit("bench-quantizers: %s holds no train_step line" % p)
        rows.append((os.path.splitext(os.path.basename(p))[0], json.loads(line)))
    base = rows[0][1]["ms_per_step"]
    print("| quantizer | ms/step | relative to %s |" % rows[0][0])
    print("|---|---|---|")
    for name, r in rows:
        print("| %s | %.1f | %+.1f%% |" % (name, r["ms_per_step"],
                                          100.0 * (r["ms_per_step"] / base - 1.0)))
    print("(batch %d, %d threads; built-in default with each quantizer)"
          % (rows[0][1]["batch"], rows[0][1]["threads"]))


if __name__ == "__main__":
    main(sys.argv[1:])
