"""python -m wcntk.analysis.report SWEEP_DIR [options]"""
import sys

from .cli import main

sys.exit(main())
