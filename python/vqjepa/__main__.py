"""`python3 -m vqjepa --version`: the package's and the library's versions."""

import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m vqjepa",
                                     description="Python bindings of libvqjepa.")
    parser.add_argument("--version", action="store_true",
                        help="print the package version and the loaded library's")
    parser.add_argument("--library", action="store_true",
                        help="print the path libvqjepa was loaded from")
    args = parser.parse_args(argv)
    try:
        import vqjepa
    except ImportError as e:
        print("vqjepa: %s" % e, file=sys.stderr)
        return 1
    if args.library:
        print(vqjepa.library_path())
    if args.version or not args.library:
        print("vqjepa %s (libvqjepa %s, numpy %s)"
              % (vqjepa.__version__, vqjepa.library_version(),
                 vqjepa._core.np.__version__ if vqjepa.HAVE_NUMPY else "not used"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
