"""Check the bindings' function declarations against the C headers.

The Python binding (ctypes prototypes) and the Rust -sys crate (an extern
block) restate every C prototype by hand; a wrong one is undefined behaviour
that no type checker sees. This script reads the prototypes of
include/vqjepa*.h and compares, for every function a binding declares:

- that the function exists in the headers;
- the number of arguments;
- the kind of the return value and of each argument: pointer, a fixed-width
  integer (enums are int), size_t, float, double, a struct passed by value
  or void.

Pointer targets are not compared (ctypes declares every handle as void*).
Struct layouts are checked elsewhere (python/tests, the -sys crate's tests).

Usage: python3 tests/binding_decls.py [ROOT]. Exit 0 when every declaration
matches, 1 with one line per mismatch.
"""

import ctypes
import glob
import os
import re
import sys

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                       os.path.join(os.path.dirname(__file__), ".."))

C_SCALARS = {
    "void": "void", "char": "i8", "signed char": "i8", "unsigned char": "u8",
    "int": "i32", "unsigned": "u32", "unsigned int": "u32", "long": "i64",
    "long long": "i64", "unsigned long": "u64", "size_t": "usize", "float": "f32",
    "double": "f64", "int8_t": "i8", "uint8_t": "u8", "int16_t": "i16",
    "uint16_t": "u16", "int32_t": "i32", "uint32_t": "u32", "int64_t": "i64",
    "uint64_t": "u64", "_Bool": "u8", "bool": "u8",
}


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def split_args(text):
    """Split a parameter list at the commas outside parentheses."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    if cur.strip():
        out.append(cur)
    return [a.strip() for a in out]


def c_headers():
    """(typedef kinds, {function: (ret kind, [arg kinds])}) of the C headers."""
    text = ""
    for path in sorted(glob.glob(os.path.join(ROOT, "include", "vqjepa*.h"))):
        text += strip_comments(open(path).read()) + "\n"
    kinds = {}
    for name in re.findall(r"typedef\s+enum\s+\w*\s*\{[^}]*\}\s*(\w+)\s*;", text):
        kinds[name] = "i32"
    for name in re.findall(r"typedef\s+struct\s+\w*\s*\{[^}]*\}\s*(\w+)\s*;", text):
        kinds[name] = "struct:" + name
    for name in re.findall(r"typedef\s+struct\s+\w+\s+(\w+)\s*;", text):
        kinds[name] = "struct:" + name  # opaque: only ever behind a pointer
    for name in re.findall(r"typedef\s+[^;{]*\(\s*\*\s*(\w+)\s*\)\s*\(", text):
        kinds[name] = "ptr"

    def kind_of(decl, is_return):
        decl = re.sub(r"\b(const|volatile|struct|enum|restrict)\b", " ", decl)
        if "*" in decl or "(" in decl or "[" in decl:
            return "ptr"
        words = decl.split()
        if not is_return and len(words) > 1:
            words = words[:-1]  # drop the parameter's name
        base = " ".join(words)
        if base in C_SCALARS:
            return C_SCALARS[base]
        if base in kinds:
            return kinds[base]
        raise ValueError("unknown C type %r" % base)

    funcs = {}
    for ret, name, args in re.findall(r"^VQJ_API\s+([^;(#]*?)\b(vqj_\w+)\s*\(([^;]*?)\)\s*;", text, re.S | re.M):
        args = split_args(" ".join(args.split()))
        if args == ["void"]:
            args = []
        funcs[name] = (kind_of(ret, True), [kind_of(a, False) for a in args])
    return kinds, funcs


def python_decls():
    sys.path.insert(0, os.path.join(ROOT, "python"))
    os.environ.setdefault("VQJEPA_LIBRARY", os.path.join(ROOT, "lib", "libvqjepa.so"))
    import vqjepa  # noqa: F401  (its declare() calls run at import)
    from vqjepa import _lib

    simple = {
        ctypes.c_void_p: "ptr", ctypes.c_char_p: "ptr", ctypes.c_int: "i32", _lib.Status: "i32",
        ctypes.c_uint: "u32", ctypes.c_size_t: "usize", ctypes.c_float: "f32",
        ctypes.c_double: "f64", ctypes.c_uint64: "u64", ctypes.c_int64: "i64",
        ctypes.c_uint16: "u16", ctypes.c_int16: "i16", ctypes.c_uint8: "u8",
        ctypes.c_int8: "i8", ctypes.c_uint32: "u32", ctypes.c_bool: "u8", None: "void",
    }

    def kind_of(t):
        if t in simple:
            return simple[t]
        if isinstance(t, type) and issubclass(t, (ctypes._Pointer, ctypes._CFuncPtr)):
            return "ptr"
        if isinstance(t, type) and issubclass(t, ctypes.Structure):
            return "struct:" + t.__name__
        raise ValueError("unknown ctypes type %r" % t)

    decls = {}
    for name, f in vars(_lib.fn).items():
        if not name.startswith("vqj_") or not hasattr(f, "argtypes"):
            continue
        decls[name] = (kind_of(f.restype), [kind_of(a) for a in (f.argtypes or [])])
    return decls


def rust_decls(kinds):
    text = open(os.path.join(ROOT, "rust", "vqjepa-sys", "src", "lib.rs")).read()
    aliases = {"c_int": "i32", "c_uint": "u32", "c_char": "i8", "c_uchar": "u8", "c_float": "f32",
               "c_double": "f64", "c_long": "i64", "c_ulong": "u64", "size_t": "usize",
               "i8": "i8", "u8": "u8", "i16": "i16", "u16": "u16", "i32": "i32", "u32": "u32",
               "i64": "i64", "u64": "u64", "usize": "usize", "f32": "f32", "f64": "f64",
               "bool": "u8"}
    for name in re.findall(r"c_enum!\(\s*(\w+)", text):
        aliases[name] = "i32"
    for name, target in re.findall(r"pub type (\w+)\s*=\s*([^;]+);", text):
        aliases[name] = "ptr" if "fn(" in target or "fn (" in target else aliases.get(target.strip(), target.strip())

    def kind_of(t):
        t = t.strip()
        if t.startswith("*") or t.startswith("Option<") or t.startswith("&"):
            return "ptr"
        if t in aliases:
            return aliases[t]
        if t in kinds and kinds[t].startswith("struct:"):
            return kinds[t]
        raise ValueError("unknown Rust type %r" % t)

    decls = {}
    for block in re.findall(r'extern\s+"C"\s*\{(.*?)\n\}', text, re.S):
        for name, args, ret in re.findall(r"pub fn (vqj_\w+)\s*\(([^)]*)\)\s*(?:->\s*([^;]+))?;", block, re.S):
            args = [a.split(":", 1)[1] for a in split_args(" ".join(args.split())) if ":" in a]
            decls[name] = (kind_of(ret) if ret else "void", [kind_of(a) for a in args])
    return decls


def canonical(kind):
    """size_t and uint64_t are one type to ctypes (c_size_t is c_ulong) and
    one ABI on LP64, the only data model the bindings support."""
    return "u64" if kind == "usize" and ctypes.sizeof(ctypes.c_size_t) == 8 else kind


def compare(binding, decls, funcs, problems):
    canon = lambda rets: (canonical(rets[0]), [canonical(k) for k in rets[1]])  # noqa: E731
    decls = {name: canon(d) for name, d in decls.items()}
    funcs = {name: canon(d) for name, d in funcs.items()}
    for name, (ret, args) in sorted(decls.items()):
        if name not in funcs:
            problems.append("%s: %s is not declared in include/vqjepa*.h" % (binding, name))
            continue
        cret, cargs = funcs[name]
        if len(args) != len(cargs):
            problems.append("%s: %s takes %d arguments, the header says %d"
                            % (binding, name, len(args), len(cargs)))
            continue
        if ret != cret:
            problems.append("%s: %s returns %s, the header says %s" % (binding, name, ret, cret))
        for i, (a, c) in enumerate(zip(args, cargs)):
            if a != c:
                problems.append("%s: %s argument %d is %s, the header says %s"
                                % (binding, name, i + 1, a, c))


def main():
    kinds, funcs = c_headers()
    if len(funcs) < 50:
        print("binding_decls: only %d prototypes read from include/ (the parser is broken)" % len(funcs))
        return 1
    problems = []
    py = python_decls()
    rs = rust_decls(kinds)
    compare("python", py, funcs, problems)
    compare("rust", rs, funcs, problems)
    for p in problems:
        print(p)
    print("binding_decls: %d C prototypes; python declares %d, rust %d; %d mismatches"
          % (len(funcs), len(py), len(rs), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
