"""Read an offline W&B run file (`run-<id>.wandb`) without a W&B server.

The file is a LevelDB-style log: a 7-byte header (":W&B", magic 0xBEE1, version),
then 32 KiB blocks of chunks, each `<crc32:u32><length:u16><type:u8>` + payload,
type 1 = full record, 2/3/4 = first/middle/last piece. Each record is a
`wandb_internal_pb2.Record` protobuf. A chunk cut off by the end of the file (a killed
run) is ignored.

Command line: `python -m wcntk.analysis.wandb_records FILE_OR_RUN_DIR` (or `wcntk-wandb-records`)
prints each run file's config, history length, summary and exit code; a directory is
searched for `run-*.wandb` files (a run dir holds them under `wandb/offline-run-*/`).
W&B's internal keys (leading underscore) are left out. Exit status 2 with one line on
stderr when there is no readable run file.
"""
from __future__ import annotations

import argparse
import json
import struct
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from wcntk.run.record import flatten

BLOCK = 32 * 1024
FILE_HEADER = struct.Struct("<4sHB")
CHUNK_HEADER = struct.Struct("<IHB")
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _payloads(data: bytes) -> Iterator[bytes]:
    if len(data) < FILE_HEADER.size:
        raise ValueError("not a W&B run file (too short)")
    ident, magic, _version = FILE_HEADER.unpack_from(data, 0)
    if ident != b":W&B" or magic != 0xBEE1:
        raise ValueError("not a W&B run file (bad header)")
    pos, pending = FILE_HEADER.size, b""
    while pos + CHUNK_HEADER.size <= len(data):
        block_left = BLOCK - pos % BLOCK
        if block_left < CHUNK_HEADER.size:      # block trailer padding
            pos += block_left
            continue
        _crc, length, kind = CHUNK_HEADER.unpack_from(data, pos)
        pos += CHUNK_HEADER.size
        if kind == 0 and length == 0:           # zero padding to the end of the block
            pos += block_left - CHUNK_HEADER.size
            continue
        if pos + length > len(data):            # torn last chunk
            return
        chunk, pos = data[pos:pos + length], pos + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
            pending = b""


def read_records(path: str | Path) -> list:
    """Every Record in the run file, in order."""
    from wandb.proto import wandb_internal_pb2

    records = []
    for payload in _payloads(Path(path).read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        records.append(record)
    return records


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def _apply(values: dict[str, object], update) -> None:
    """Apply a config or summary record's `update` and `remove` items to ``values``."""
    for item in update.update:
        values[_key(item)] = json.loads(item.value_json)
    for item in update.remove:
        values.pop(_key(item), None)


def history_rows(path: str | Path, records: list | None = None) -> list[dict[str, object]]:
    """The logged history rows ({key: value}) of a run file."""
    records = read_records(path) if records is None else records
    return [{_key(item): json.loads(item.value_json) for item in record.history.item}
            for record in records if record.WhichOneof("record_type") == "history"]


def summary_values(path: str | Path, records: list | None = None) -> dict[str, object]:
    """The run's final summary ({key: value}); later updates override earlier ones."""
    summary: dict[str, object] = {}
    for record in read_records(path) if records is None else records:
        if record.WhichOneof("record_type") == "summary":
            _apply(summary, record.summary)
    return summary


def config_values(path: str | Path, records: list | None = None) -> dict[str, object]:
    """The run's config ({top-level key: value}): the run record's, then later updates."""
    config: dict[str, object] = {}
    for record in read_records(path) if records is None else records:
        kind = record.WhichOneof("record_type")
        if kind == "run":
            _apply(config, record.run.config)
        elif kind == "config":
            _apply(config, record.config)
    return config


def run_files(path: str | Path) -> list[Path]:
    """``path`` itself if it is a file, else the `run-*.wandb` files below it, sorted."""
    path = Path(path)
    if path.is_dir():
        return sorted(path.rglob("run-*.wandb"))
    if not path.exists():
        raise FileNotFoundError(f"no such file or directory: {path}")
    return [path]


def describe(path: str | Path) -> str:
    """What the CLI prints for one run file: run, config, history length, summary, exit code."""
    records = read_records(path)
    runs = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    exits = [r.exit for r in records if r.WhichOneof("record_type") == "exit"]
    head = f"{path}: run {runs[0].run_id or '?'}" if runs else f"{path}: no run record"
    if runs:
        head += "".join(f", {label} {value}" for label, value in (
            ("name", runs[0].display_name), ("project", runs[0].project), ("group", runs[0].run_group))
            if value)

    def block(title: str, values: dict[str, object]) -> list[str]:
        shown = {k: v for k, v in values.items() if not k.startswith("_")}
        pairs = sorted(flatten(shown))
        return [f"{title} ({len(pairs)} keys):"] + [f"  {k}: {json.dumps(v)}" for k, v in pairs]

    history = history_rows(path, records)
    steps = [row["step"] for row in history if "step" in row]
    span = f", step {steps[0]} to {steps[-1]}" if steps else ""
    end = f"exit code: {exits[-1].exit_code}" if exits else "exit code: none (the run did not finish)"
    return "\n".join([head, *block("config", config_values(path, records)),
                      f"history: {len(history)} rows{span}",
                      *block("summary", summary_values(path, records)), end])


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: python -m wcntk.analysis.wandb_records FILE_OR_RUN_DIR; see the module docstring."""
    from google.protobuf.message import DecodeError

    parser = argparse.ArgumentParser(prog="python -m wcntk.analysis.wandb_records",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path, help="a run-<id>.wandb file, or a directory holding some")
    args = parser.parse_args(argv)
    try:
        files = run_files(args.path)
        if not files:
            raise FileNotFoundError(f"no run-*.wandb file under {args.path}")
        texts = []
        for path in files:
            try:
                texts.append(describe(path))
            except (ValueError, DecodeError) as error:
                raise ValueError(f"{path}: {error}") from error
    except (OSError, ValueError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    print("\n\n".join(texts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
