"""The random streams a checkpoint saves: a resumed process draws what an uninterrupted one
would have; under ranks each rank continues its own, and a run resumed on another number of
ranks gives each rank a distinct stream derived from the saved one. All in one process: the
rank and the number of ranks are arguments, and the gathering collective is stood in for."""

from __future__ import annotations

import torch

from pyrovae.infer.streams import gather_streams, random_streams, restore_streams


def draws(generator: torch.Generator) -> tuple[list[float], list[int]]:
    """The next noise (torch's stream) and the next data order (the data generator's)."""
    return torch.rand(4).tolist(), torch.randperm(8, generator=generator).tolist()


def streams_of(seed: int) -> dict:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed + 100)
    return random_streams(generator)


def test_one_process_restored_with_the_defaults_draws_what_it_would_have_drawn():
    generator = torch.Generator().manual_seed(3)
    torch.manual_seed(1)
    saved = random_streams(generator)
    want = draws(generator)
    torch.manual_seed(99)  # a fresh process: other states
    fresh = torch.Generator().manual_seed(42)
    restore_streams(saved, fresh)
    assert draws(fresh) == want


def test_each_rank_continues_its_own_saved_stream():
    per_rank = [streams_of(10), streams_of(20)]
    saved = {**per_rank[0], "ranks": per_rank}  # rank 0's streams at the top, as saved
    for rank in (0, 1):
        generator = torch.Generator()
        restore_streams(per_rank[rank], generator)
        want = draws(generator)
        generator = torch.Generator()
        restore_streams(saved, generator, rank=rank, ranks=2)
        assert draws(generator) == want, rank


def _derived(saved: dict, ranks: int) -> list[tuple[list[float], list[int]]]:
    out = []
    for rank in range(ranks):
        generator = torch.Generator()
        restore_streams(saved, generator, rank=rank, ranks=ranks)
        out.append(draws(generator))
    return out


def test_resumed_on_another_number_of_ranks_each_rank_draws_its_own_derived_stream():
    one = streams_of(5)  # saved by one process: no per-rank streams
    three = {**streams_of(6), "ranks": [streams_of(6), streams_of(7), streams_of(8)]}
    for saved in (one, three):
        generator = torch.Generator()
        restore_streams(saved, generator)
        continued = draws(generator)
        first, second = _derived(saved, 2)
        assert first[0] != second[0]  # distinct noise on the two ranks
        assert first[0] != continued[0] and second[0] != continued[0]
        assert first[1] == second[1] == continued[1]  # one data order, the saved one
        assert _derived(saved, 2) == [first, second]  # derived, not fresh: reproducible


def test_gathered_streams_hold_rank_r_at_index_r(monkeypatch):
    mine = streams_of(1)
    theirs = streams_of(2)

    def all_gather_object(out: list, obj: dict) -> None:
        assert len(out) == 2
        out[0], out[1] = theirs, obj  # this process is rank 1

    monkeypatch.setattr(torch.distributed, "all_gather_object", all_gather_object, raising=False)
    torch.set_rng_state(mine["torch"])
    generator = torch.Generator()
    generator.set_state(mine["data"])
    gathered = gather_streams(generator, 2)
    assert torch.equal(gathered[1]["torch"], mine["torch"])
    assert torch.equal(gathered[1]["data"], mine["data"])
    assert gathered[0] is theirs
