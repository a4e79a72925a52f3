"""Read an offline W&B run file (`run-<id>.wandb`) without a W&B server.

The file is a LevelDB-style log: a 7-byte header (":W&B", magic 0xBEE1, version),
then 32 KiB blocks of chunks, each `<crc32:u32><length:u16><type:u8>` + payload,
type 1 = full record, 2/3/4 = first/middle/last piece. Each record is a
`wandb_internal_pb2.Record` protobuf.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Dict, Iterator, List

BLOCK = 32 * 1024
FILE_HEADER = struct.Struct("<4sHB")
CHUNK_HEADER = struct.Struct("<IHB")
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _payloads(data: bytes) -> Iterator[bytes]:
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


def read_records(path: str | Path) -> List:
    """Every Record in the run file, in order."""
    from wandb.proto import wandb_internal_pb2

    records = []
    for payload in _payloads(Path(path).read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        records.append(record)
    return records


def history_rows(path: str | Path) -> List[Dict[str, object]]:
    """The logged history rows ({key: value}) of a run file."""
    rows = []
    for record in read_records(path):
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item})
    return rows


def summary_values(path: str | Path) -> Dict[str, object]:
    """The run's final summary ({key: value}); later updates override earlier ones."""
    summary: Dict[str, object] = {}
    for record in read_records(path):
        if record.WhichOneof("record_type") == "summary":
            for item in record.summary.update:
                summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return summary
