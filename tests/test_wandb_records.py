"""wcntk.analysis.wandb_records: the run-file reader on files written here in W&B's log format
(records split across 32 KiB blocks, a torn tail), its command line, and a real offline run."""
import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from wandb.proto import wandb_internal_pb2 as pb

from wcntk.analysis.wandb_records import (
    BLOCK,
    config_values,
    history_rows,
    main,
    read_records,
    summary_values,
)


def write_run_file(path: Path, records) -> list[int]:
    """W&B's LevelDB-style log: header, then each record as chunks that never cross a 32 KiB
    block (a block end under 7 bytes away is zero-padded). Returns each record's end offset."""
    data, ends = bytearray(struct.pack("<4sHB", b":W&B", 0xBEE1, 0)), []
    for record in records:
        payload, first = record.SerializeToString(), True
        while True:
            left = BLOCK - len(data) % BLOCK
            if left < 7:
                data += bytes(left)
                continue
            piece, payload = payload[:left - 7], payload[left - 7:]
            kind = (1 if not payload else 2) if first else (4 if not payload else 3)
            data += struct.pack("<IHB", 0, len(piece), kind) + piece
            first = False
            if not payload:
                break
        ends.append(len(data))
    path.write_bytes(bytes(data))
    return ends


def item(update, key, value):
    entry = update.add()
    if "/" in key:
        entry.nested_key.extend(key.split("/"))
    else:
        entry.key = key
    entry.value_json = json.dumps(value)


def make_records(big_note: str = ""):
    run = pb.Record()
    run.run.run_id, run.run.project, run.run.display_name = "abc123", "wcntk", "w8-s0"
    item(run.run.config.update, "width", 8)
    item(run.run.config.update, "dataset", {"name": "digits", "n_train": 64})
    item(run.run.config.update, "_wandb", {"internal": 1})
    config = pb.Record()
    item(config.config.update, "n_params", 610)
    records = [run, config]
    for step in range(3):
        history = pb.Record()
        item(history.history.item, "step", step)
        item(history.history.item, "net/train_loss", 1.0 / (step + 1))
        records.append(history)
    for loss in (0.5, 1 / 3):
        summary = pb.Record()
        item(summary.summary.update, "net/train_loss", loss)
        item(summary.summary.update, "_wandb/runtime", 3)
        records.append(summary)
    if big_note:
        note = pb.Record()
        item(note.summary.update, "note", big_note)
        records.append(note)
    exit_record = pb.Record()
    exit_record.exit.exit_code = 0
    return records + [exit_record]


@pytest.fixture
def run_file(tmp_path):
    path = tmp_path / "run" / "wandb" / "offline-run-1-abc123" / "run-abc123.wandb"
    path.parent.mkdir(parents=True)
    write_run_file(path, make_records())
    return path


def test_reader_gives_config_history_and_summary(run_file):
    assert [r.WhichOneof("record_type") for r in read_records(run_file)] == \
        ["run", "config", "history", "history", "history", "summary", "summary", "exit"]
    assert config_values(run_file) == {"width": 8, "dataset": {"name": "digits", "n_train": 64},
                                       "_wandb": {"internal": 1}, "n_params": 610}
    assert history_rows(run_file) == [{"step": s, "net/train_loss": 1.0 / (s + 1)} for s in range(3)]
    assert summary_values(run_file) == {"net/train_loss": 1 / 3, "_wandb/runtime": 3}


def test_records_across_blocks_and_torn_tail(tmp_path):
    path, note = tmp_path / "run-big.wandb", "x" * (2 * BLOCK + 123)  # first, middle and last chunks
    records = make_records(note) * 3  # later records start at varied offsets within a block
    ends = write_run_file(path, records)
    assert len(read_records(path)) == len(records) and summary_values(path)["note"] == note
    assert ends[-1] > 6 * BLOCK
    path.write_bytes(path.read_bytes()[:ends[-1] - 2])  # the last record's chunk cut short
    assert len(read_records(path)) == len(records) - 1
    big = len(records) - 2  # the last big note, split over four chunks: cut inside its middle
    path.write_bytes(path.read_bytes()[:ends[big - 1] + BLOCK + 50])
    assert len(read_records(path)) == big


def test_cli_prints_config_history_length_summary_and_exit_code(run_file, capsys):
    for target in (run_file, run_file.parents[2]):  # the file, or the run dir above it
        assert main([str(target)]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0] == f"{run_file}: run abc123, name w8-s0, project wcntk"
        assert out[1:6] == ["config (4 keys):", "  dataset.n_train: 64", "  dataset.name: \"digits\"",
                            "  n_params: 610", "  width: 8"]
        assert out[6] == "history: 3 rows, step 0 to 2"
        assert out[7:] == ["summary (1 keys):", f"  net/train_loss: {json.dumps(1 / 3)}", "exit code: 0"]


def test_cli_unfinished_run_and_several_files(run_file, capsys):
    other = run_file.parent.parent / "offline-run-2-def456" / "run-def456.wandb"
    other.parent.mkdir()
    write_run_file(other, make_records()[:-1])
    assert main([str(run_file.parents[2])]) == 0
    out = capsys.readouterr().out
    assert out.count("history: 3 rows") == 2 and out.count(": run abc123") == 2
    assert out.index(str(run_file)) < out.index(str(other))
    assert out.rstrip().endswith("exit code: none (the run did not finish)")


def test_cli_errors_exit_2_with_one_line(tmp_path, capsys):
    bad_header = tmp_path / "notes.wandb"
    bad_header.write_text("hello, not a run file")
    garbage = tmp_path / "garbage.wandb"
    header, chunk = struct.pack("<4sHB", b":W&B", 0xBEE1, 0), struct.pack("<IHB", 0, 3, 1)
    garbage.write_bytes(header + chunk + b"\xff\xff\xff")  # a full record that is no protobuf
    (tmp_path / "empty").mkdir()
    cases = [(tmp_path / "missing", "no such file or directory"), (bad_header, "bad header"),
             (garbage, "garbage.wandb"), (tmp_path / "empty", "no run-*.wandb file")]
    for target, words in cases:
        assert main([str(target)]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.count("\n") == 1, captured.err
        assert captured.err.startswith("python -m wcntk.analysis.wandb_records: error: ")
        assert words in captured.err


@pytest.mark.slow
def test_cli_on_a_real_offline_run_from_any_directory(tmp_path):
    """A run written by wandb itself, read by `python -m wcntk.analysis.wandb_records` run from elsewhere."""
    script = textwrap.dedent("""
        import sys, wandb
        run = wandb.init(mode="offline", dir=sys.argv[1], project="wcntk", name="w8-s0",
                         config={"width": 8, "dataset": {"name": "digits"}})
        for step in range(4):
            run.log({"step": step, "net/train_loss": 1.0 / (step + 1)})
        run.summary["status"] = "ok"
        run.finish()
    """)
    env = {**os.environ, "WANDB_SILENT": "true"}
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, env=env, timeout=120)
    proc = subprocess.run([sys.executable, "-m", "wcntk.analysis.wandb_records", str(tmp_path)], cwd="/",
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].endswith(", name w8-s0, project wcntk")
    assert "  width: 8" in lines and '  dataset.name: "digits"' in lines
    assert "history: 4 rows, step 0 to 3" in lines
    assert '  status: "ok"' in lines and "  net/train_loss: 0.25" in lines
    assert lines[-1] == "exit code: 0"
