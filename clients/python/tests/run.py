"""Runs every test of this folder (unit and end to end) with unittest and ends with one line
`python-client: N passed, N failed, N skipped`; exits non-zero on any failure or error.

    python clients/python/tests/run.py [-k PATTERN]

Run it with the interpreter of an environment where haplane-client is installed: this folder
holds only tests, so the package comes from that environment, not from the source tree.
"""

import argparse
import sys
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-k", dest="patterns", action="append", help="only tests matching this substring")
    args = parser.parse_args()
    import haplane_client

    print(f"haplane_client from {Path(haplane_client.__file__).parent}", flush=True)
    loader = unittest.TestLoader()
    if args.patterns:
        loader.testNamePatterns = [f"*{pattern}*" for pattern in args.patterns]
    suite = loader.discover(str(HERE), top_level_dir=str(HERE))
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped
    print(f"python-client: {passed} passed, {failed} failed, {skipped} skipped")
    return 0 if failed == 0 and result.testsRun > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
