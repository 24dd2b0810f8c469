"""Summarize the train_step lines of `vqjepa bench --json` and
tools/reference/bench_ref.py --json: C against PyTorch, per variant.

Usage: python3 tools/bench_table.py FILE...   (JSON lines; other lines are ignored)

Prints one row per (device, variant, batch, threads) and PyTorch flavour
(eager, or torch.compile for bench_ref.py --compile): C and PyTorch samples/s
and ms/step, the speed ratio C / PyTorch, and the peak resident memory of each
process. The targets (issue 16, docs/benchmarks.md): a ratio of at least 5 on
the CPU and at least 10 on a GPU; the last column says whether a row meets
it. Lines of bench_ref.py --view-backward each (a memory variant, not the
reference) are left out. Needs only the standard library.
"""

import json
import sys

TARGET = {"cpu": 5.0, "cuda": 10.0}


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
                device = r.get("device", "cpu")
                # On a GPU the host thread count is not what is compared.
                threads = "-" if device != "cpu" else str(r["threads"])
                key = (device, r["variant"], r["batch"], threads)
                impl = r.get("impl", "c")
                if impl == "pytorch":
                    impl = "pytorch compile" if r.get("compile") else "pytorch eager"
                rows.setdefault(key, {})[impl] = r
    if not rows:
        print("bench_table: no train_step lines in " + " ".join(paths))
        return 1
    head = ("device", "variant", "batch", "thr", "PyTorch", "C samples/s", "PyTorch samples/s",
            "ratio", "C ms/step", "PyTorch ms/step", "C max RSS", "PyTorch max RSS", "target")
    out = [head]
    for (device, variant, batch, threads), r in sorted(rows.items()):
        c = r.get("c")
        flavours = sorted(k for k in r if k != "c") or [None]

        def num(x, key, fmt):
            return fmt % x[key] if x and key in x else "-"

        for flavour in flavours:
            p = r.get(flavour) if flavour else None
            ratio = c["samples_per_s"] / p["samples_per_s"] if c and p else None
            met = "-"
            if ratio is not None:
                want = TARGET.get(device, 5.0)
                met = ("met" if ratio >= want else "MISSED") + " (%gx)" % want
            out.append((device, variant, str(batch), threads,
                        flavour.split()[1] if flavour else "-",
                        num(c, "samples_per_s", "%.1f"), num(p, "samples_per_s", "%.1f"),
                        "%.2fx" % ratio if ratio is not None else "-",
                        num(c, "ms_per_step", "%.0f"), num(p, "ms_per_step", "%.0f"),
                        num(c, "max_rss_mib", "%.0f MiB"), num(p, "max_rss_mib", "%.0f MiB"),
                        met))
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
