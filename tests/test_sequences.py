"""Sequence data: piano rolls from notes by hand, padding, the fixed split of the chorales'
cache, and the refusals; the conversion of real chorales where music21 is installed."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from pyrovae.data.sequences import (
    CACHE,
    CACHE_VERSION,
    KEYS,
    chorale_names,
    load_chorales,
    pad_sequences,
    piano_roll,
    split_sequences,
)


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch):
    """The user's cache directory, empty and in the test's own folder."""
    cache = tmp_path / "user-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache / "pyrovae"


def test_a_key_is_on_at_every_quarter_onset_its_note_sounds_at():
    notes = [
        (0.0, 2.0, 60),  # quarters 0 and 1
        (1.5, 1.0, 64),  # sounds over [1.5, 2.5): the onset of quarter 2 only
        (0.5, 0.5, 67),  # between onsets: at none
        (3.0, 1.0, 21),  # the lowest key
        (3.0, 0.25, 108),  # the highest, a sixteenth on the onset of quarter 3
    ]
    roll = piano_roll(notes)
    assert roll.shape == (4, KEYS) and roll.dtype == np.uint8
    on = {(int(k), int(p) + 21) for k, p in zip(*np.nonzero(roll), strict=True)}
    assert on == {(0, 60), (1, 60), (2, 64), (3, 21), (3, 108)}
    assert piano_roll(notes, steps=2).shape == (2, KEYS)  # cut at the given length
    with pytest.raises(ValueError, match="outside the piano's 88 keys"):
        piano_roll([(0.0, 1.0, 109)])


def test_padding_keeps_every_sequence_and_its_length():
    x, lengths = pad_sequences([np.ones((3, 2)), np.full((1, 2), 2.0), np.zeros((5, 2))])
    assert x.shape == (3, 5, 2) and x.dtype == torch.float32
    assert lengths.tolist() == [3, 1, 5]
    assert x[0, :3].eq(1).all() and x[0, 3:].eq(0).all() and x[1, 0].eq(2).all()
    for bad, message in (([], "no sequences"), ([np.ones((2, 3)), np.ones((2, 4))], "one D"),
                         ([np.ones((0, 2))], "at least one step")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            pad_sequences(bad)


def write_cache(path, n: int = 10) -> None:
    rolls = [np.eye(KEYS, dtype=np.uint8)[: 3 + i] for i in range(n)]  # piece i: 3 + i steps
    x, lengths = pad_sequences(rolls)
    np.savez(
        path / CACHE,
        x=x.numpy().astype(np.uint8),
        lengths=lengths.numpy(),
        names=np.array([f"piece{i}" for i in range(n)]),
        version=CACHE_VERSION,
    )


def test_the_cached_pieces_split_the_same_way_every_time_and_by_piece(tmp_path):
    write_cache(tmp_path)
    first, second = split_sequences(tmp_path / CACHE), load_chorales(tmp_path)
    names = chorale_names(tmp_path)
    assert [len(names[p]) for p in ("train", "valid", "test")] == [6, 2, 2]
    assert sorted(sum(names.values(), ())) == sorted(f"piece{i}" for i in range(10))
    assert torch.equal(second.test_x, first.test_x) and first.is_sequences
    for part in ("train", "valid", "test"):
        x, lengths = getattr(first, f"{part}_x"), getattr(first, f"{part}_lengths")
        assert x.shape[1] == int(lengths.max())  # padded to this split's longest piece
        for row, name in enumerate(names[part]):
            steps = 3 + int(name[5:])
            assert int(lengths[row]) == steps
            assert x[row, :steps].sum() == steps and x[row, steps:].sum() == 0
    assert first.input_dim == KEYS


def test_without_music21_or_a_cache_the_error_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "music21", None)  # as if not installed
    with pytest.raises(ImportError, match="pip install music21"):
        load_chorales(tmp_path)


@pytest.mark.slow
def test_real_chorales_convert_to_four_voice_rolls(tmp_path):
    pytest.importorskip("music21")
    data = load_chorales(tmp_path)
    total = len(data.train_x) + len(data.valid_x) + len(data.test_x)
    assert total > 350 and sum(map(len, chorale_names(tmp_path).values())) == total
    on = torch.cat([data.train_x, data.valid_x[:, : data.train_x.shape[1]]]).sum(-1)
    sounding = on[on > 0]
    assert 3.5 < float(sounding.mean()) <= 4.0  # four voices, sometimes in unison
    assert 40 < float(data.train_lengths.float().mean()) < 80  # quarters per chorale


def test_a_data_directory_that_cannot_be_written_caches_in_the_users_cache(
    tmp_path, user_cache, monkeypatch
):
    from pyrovae.data import sequences

    rolls = [np.eye(KEYS, dtype=np.uint8)[: 3 + i] for i in range(10)]
    monkeypatch.setattr(sequences, "_chorale_paths", lambda: [f"/c/{i}.mxl" for i in range(10)])
    monkeypatch.setattr(sequences, "_convert", lambda path: rolls[int(path[3:-4])])
    blocked = tmp_path / "file"  # a data directory below a file: not writable, even by root
    blocked.write_text("not a directory")
    data = load_chorales(blocked / "data")
    assert (user_cache / CACHE).exists()
    assert sorted(data.train_lengths.tolist() + data.valid_lengths.tolist() +
                  data.test_lengths.tolist()) == list(range(3, 13))  # fmt: skip
    monkeypatch.setattr(sequences, "_convert", None)  # read back from the cache, unconverted
    assert torch.equal(load_chorales(blocked / "data").test_x, data.test_x)


def test_a_cache_that_cannot_be_written_anywhere_is_an_error_naming_both(tmp_path, monkeypatch):
    from pyrovae.data import sequences

    monkeypatch.setattr(sequences, "_chorale_paths", lambda: ["/c/piece0.mxl"])
    monkeypatch.setattr(sequences, "_convert", lambda path: np.eye(KEYS, dtype=np.uint8)[:3])
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    with pytest.raises(OSError, match="cannot cache the converted chorales"):
        load_chorales(blocked / "data")
