#!/bin/sh
# The public headers: include/vqjepa.h (the stable tier) and
# include/vqjepa_stages.h (the experimental tier; docs/api-conventions.md,
# "Two tiers").
#
# Every public declaration (each VQJ_API function) has a
# Doxygen comment of its own ("/** ... */" right above it, or "/**< ... */"
# right after it), and the comment of every function returning a vqj_status
# names its errors ("Errors: ...", "errors as ...", a VQJ_ERR_ code, or
# "Never fails"). Ownership: the comment of a function that makes a handle
# (a `vqj_x **out` parameter) says who destroys it, and that of a function
# returning a pointer says who owns it (owned, borrowed, static, valid...).
# `make docs` builds the HTML reference from these comments.
#
# The tiers: the stable header declares at most 80 functions, no function is
# declared in both, the VQJEPA_0 node of src/vqjepa.map lists exactly the
# stable header's functions, and the headers cite no file outside the
# repository (every docs/ page they name exists).
set -eu
HEADER=${1:-include/vqjepa.h}
STAGES=${2:-include/vqjepa_stages.h}
MAP=${3:-src/vqjepa.map}
python3 - "$HEADER" "$STAGES" "$MAP" <<'PY'
import os, re, sys

MAX_STABLE = 80
failed = []
count = 0
names = {}


def check_docs(path):
    global count
    text = open(path, encoding="utf-8").read()
    lines = text.split("\n")
    names[path] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("VQJ_API"):
            i += 1
            continue
        # the whole declaration, up to its ';'
        j = i
        decl = line
        while ";" not in lines[j]:
            j += 1
            decl += " " + lines[j].strip()
        m = re.search(r"(\w+)\s*\(", decl)
        name = m.group(1) if m else decl
        count += 1
        names[path].append(name)
        # the comment right above: the previous non-blank line ends a /** comment
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        comment = None
        if k >= 0 and lines[k].rstrip().endswith("*/"):
            start = k
            while start >= 0 and "/*" not in lines[start]:
                start -= 1
            if start >= 0 and "/**" in lines[start]:
                comment = "\n".join(lines[start:k + 1])
                if "@}" in comment and "@{" not in comment and start == k:
                    comment = None  # a group end, not a comment of its own
        after = lines[j].split(";", 1)[1]
        if comment is None and "/**<" in after:
            comment = after
        if comment is None:
            failed.append("%s:%d: %s has no /** comment of its own" % (path, i + 1, name))
        elif re.match(r"VQJ_API\s+vqj_status\b", decl) and not re.search(r"[Ee]rrors?\b|VQJ_ERR_|Never fails", comment):
            failed.append("%s:%d: %s returns a vqj_status but its comment names no errors" % (path, i + 1, name))
        elif re.search(r"\bvqj_(?!grid\b)\w+\s*\*\*\s*\w+", decl) and \
                not re.search(r"destroy|[Oo]wnership|owned|caller", comment):
            failed.append("%s:%d: %s makes a handle but its comment says nothing of who destroys it"
                          % (path, i + 1, name))
        elif re.match(r"VQJ_API\s+(const\s+)?\w+\s*\*", decl) and \
                not re.search(r"owned|[Bb]orrowed|static|valid|free|lifetime", comment):
            failed.append("%s:%d: %s returns a pointer but its comment does not say who owns it"
                          % (path, i + 1, name))
        i = j + 1


stable, stages, mapfile = sys.argv[1:4]
for path in (stable, stages):
    check_docs(path)

# The tiers.
if len(names[stable]) > MAX_STABLE:
    failed.append("%s declares %d functions, more than the stable tier's bound of %d"
                  % (stable, len(names[stable]), MAX_STABLE))
both = sorted(set(names[stable]) & set(names[stages]))
if both:
    failed.append("declared in both headers: " + ", ".join(both))
if '#include "vqjepa.h"' not in open(stages, encoding="utf-8").read():
    failed.append("%s does not include vqjepa.h" % stages)
maptext = re.sub(r"/\*.*?\*/", "", open(mapfile, encoding="utf-8").read(), flags=re.S)
node = re.search(r"VQJEPA_0\s*\{(.*?)\}", maptext, re.S)
listed = re.findall(r"\b(vqj_\w+)\s*;", node.group(1)) if node else []
if set(listed) != set(names[stable]):
    for n in sorted(set(names[stable]) - set(listed)):
        failed.append("%s: %s is stable but not in the VQJEPA_0 node" % (mapfile, n))
    for n in sorted(set(listed) - set(names[stable])):
        failed.append("%s: %s is in the VQJEPA_0 node but not in %s" % (mapfile, n, stable))

# Citations: files of this repository only.
for path in (stable, stages):
    text = open(path, encoding="utf-8").read()
    for m in re.finditer(r"\b(DESIGN\.md|\.\./[\w./-]+)", text):
        failed.append("%s cites %s, outside the repository" % (path, m.group(1)))
    for doc in sorted(set(re.findall(r"\bdocs/[\w-]+\.md", text))):
        if not os.path.exists(doc):
            failed.append("%s cites %s, which does not exist" % (path, doc))

print("header_docs_test: %d functions (%d stable, at most %d; %d experimental)"
      % (count, len(names[stable]), MAX_STABLE, len(names[stages])))

for f in failed:
    print("header_docs_test: " + f)
print("header_docs_test: %d passed, %d failed" % (count - len(failed), len(failed)))
sys.exit(1 if failed or count == 0 else 0)
PY
