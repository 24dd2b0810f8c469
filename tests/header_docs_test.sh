#!/bin/sh
# Every public declaration of include/vqjepa.h (each VQJ_API function) has a
# Doxygen comment of its own ("/** ... */" right above it, or "/**< ... */"
# right after it), and the comment of every function returning a vqj_status
# names its errors ("Errors: ...", "errors as ...", a VQJ_ERR_ code, or
# "Never fails"). Ownership: the comment of a function that makes a handle
# (a `vqj_x **out` parameter) says who destroys it, and that of a function
# returning a pointer says who owns it (owned, borrowed, static, valid...).
# `make docs` builds the HTML reference from these comments.
set -eu
HEADER=${1:-include/vqjepa.h}
python3 - "$HEADER" <<'PY'
import re, sys

path = sys.argv[1]
text = open(path, encoding="utf-8").read()
lines = text.split("\n")
failed = []
count = 0
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

for f in failed:
    print("header_docs_test: " + f)
print("header_docs_test: %d passed, %d failed" % (count - len(failed), len(failed)))
sys.exit(1 if failed or count == 0 else 0)
PY
