"""Reading a run dir's offline W&B run file in tests."""
import time
from pathlib import Path

from wcntk.analysis.wandb_records import read_records


def exit_codes(run_dir: Path, wait_s: float = 30) -> list[int]:
    """Exit codes in the run dir's offline W&B run file. W&B's service process writes the file
    after run.finish() returns (about 0.3 s here): wait up to `wait_s` for the exit record."""
    (run_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    deadline = time.monotonic() + wait_s
    while True:
        codes = [r.exit.exit_code for r in read_records(run_file) if r.WhichOneof("record_type") == "exit"]
        if codes or time.monotonic() > deadline:
            return codes
        time.sleep(0.2)
