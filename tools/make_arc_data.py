#!/usr/bin/env python3
"""Regenerate data/arc-agi-1/{training,evaluation}.jsonl.gz, the ARC-AGI-1
tasks built into libvqjepa, from the public task folders.

usage: tools/make_arc_data.py [ARC_AGI_1_DIR]   (default ../shared/data/arc-agi-1)

One task a line, in byte order of the file names: {"id": NAME, "train": [...],
"test": [...]} with the file's own keys after "id". The gzip header carries
no name and no time, so the same folder gives the same bytes."""
import gzip
import json
import os
import shutil
import sys

src = sys.argv[1] if len(sys.argv) > 1 else os.path.join("..", "shared", "data", "arc-agi-1")
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "arc-agi-1")
os.makedirs(out, exist_ok=True)
for split in ("training", "evaluation"):
    folder = os.path.join(src, "data", split)
    names = sorted(n for n in os.listdir(folder) if n.endswith(".json"))
    lines = []
    for n in names:
        with open(os.path.join(folder, n)) as f:
            task = json.load(f)
        record = {"id": n[:-len(".json")]}
        record.update(task)
        lines.append(json.dumps(record, separators=(",", ":")))
    data = ("\n".join(lines) + "\n").encode()
    path = os.path.join(out, split + ".jsonl.gz")
    with open(path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as g:
            g.write(data)
    print("%s: %d tasks, %d bytes" % (path, len(names), os.path.getsize(path)))
shutil.copyfile(os.path.join(src, "LICENSE"), os.path.join(out, "LICENSE"))
