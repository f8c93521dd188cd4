"""One thin module per DVC stage: read params → call the library → write outputs atomically."""
from __future__ import annotations

import sys
from collections.abc import Callable


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's `main`, turning expected failures (bad params, bad input) into one line + exit 1."""
    try:
        main()
    except (ValueError, FileNotFoundError) as err:
        name = sys.argv[0].rsplit("/", 1)[-1].removesuffix(".py")
        print(f"{name}: error: {err}", file=sys.stderr)
        sys.exit(1)
