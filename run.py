"""Train a network and its linearized twin side by side: `python run.py width=4096`.

The thin entry of a checkout: the same as `python -m wcntk` (wcntk/__main__.py, the Hydra entry
point; the run itself lives in wcntk.run.entry).
"""
from wcntk.__main__ import cli

if __name__ == "__main__":
    cli()
