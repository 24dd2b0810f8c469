"""Summarize the train_step lines of `vqjepa bench --json` and
tools/reference/bench_ref.py --json: C against PyTorch, per variant.

Usage: python3 tools/bench_table.py FILE...   (JSON lines; other lines are ignored)

Prints one row per (variant, batch, threads): C and PyTorch samples/s and
ms/step, the speed ratio C / PyTorch, and the peak resident memory of each
process. The target (README, docs/benchmarks.md) is a ratio of at least 3
with no more memory than PyTorch; the last column says whether a row meets it.
Lines of bench_ref.py --view-backward each (a memory variant, not the
reference) are left out. Needs only the standard library.
"""

import json
import sys


def main(paths):
    rows = {}
    for path in paths:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                if r.get("what") != "train_step" or "view_backward" in r:
                    continue  # bench_ref.py --view-backward each: not the reference
                key = (r["variant"], r["batch"], r["threads"])
                rows.setdefault(key, {})[r.get("impl", "c")] = r
    if not rows:
        print("bench_table: no train_step lines in " + " ".join(paths))
        return 1
    head = ("variant", "batch", "thr", "C samples/s", "PyTorch samples/s", "ratio",
            "C ms/step", "PyTorch ms/step", "C max RSS", "PyTorch max RSS", "target")
    out = [head]
    for (variant, batch, threads), r in sorted(rows.items()):
        c, p = r.get("c"), r.get("pytorch")

        def num(x, key, fmt):
            return fmt % x[key] if x else "-"

        ratio = c["samples_per_s"] / p["samples_per_s"] if c and p else None
        met = "-"
        if ratio is not None:
            met = "met" if ratio >= 3.0 and c["max_rss_mib"] <= p["max_rss_mib"] else "MISSED"
        out.append((variant, str(batch), str(threads), num(c, "samples_per_s", "%.1f"),
                    num(p, "samples_per_s", "%.1f"),
                    "%.2fx" % ratio if ratio is not None else "-",
                    num(c, "ms_per_step", "%.0f"), num(p, "ms_per_step", "%.0f"),
                    num(c, "max_rss_mib", "%.0f MiB"), num(p, "max_rss_mib", "%.0f MiB"), met))
    widths = [max(len(row[i]) for row in out) for i in range(len(head))]
    for n, row in enumerate(out):
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1:]))
