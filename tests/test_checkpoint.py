import os
import pickle

import pytest
import torch

from pyrovae.runs.record import (
    CheckpointError,
    atomic_write,
    load_checkpoint,
    read_json,
    save_checkpoint,
    write_json,
)


def test_round_trip_keeps_tensors_and_plain_values(tmp_path):
    state = {"model": {"w": torch.randn(3, 2)}, "epoch": 4, "history": [{"epoch": 1, "x": 0.5}]}
    path = save_checkpoint(tmp_path / "c.pt", state)
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["w"], state["model"]["w"])
    assert loaded["epoch"] == 4 and loaded["history"] == state["history"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"epoch": 1})
    before = path.read_bytes()

    def crash(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["c.pt"]


def test_arbitrary_pickles_are_never_loaded(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"format_version": 1, "x": Evil()}))
    with pytest.raises(CheckpointError, match="cannot read the checkpoint"):
        load_checkpoint(path)


def test_foreign_and_missing_files_are_refused_clearly(tmp_path):
    torch.save({"weights": torch.ones(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a pyrovae checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(tmp_path / "junk.pt")


def test_json_round_trip_and_damaged_json(tmp_path):
    write_json(tmp_path / "m.json", {"a": [1, 2.5]})
    assert read_json(tmp_path / "m.json") == {"a": [1, 2.5]}
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_json(tmp_path / "bad.json")
