"""`python -m pipeline.cli`: the `realsynth` command."""
import sys

from pipeline.cli import main

sys.exit(main())
