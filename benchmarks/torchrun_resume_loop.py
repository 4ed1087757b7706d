"""The resumed torchrun scenario, looped: does any rank ever abort?

Each round trains a VAE on digits under ``torchrun --nproc_per_node 2`` for 3 epochs, and
another for 2 epochs then ``--resume`` to 3 (the scenario of
``tests/test_torchrun.py::test_a_run_resumed_under_torchrun_equals_an_uninterrupted_one``),
and checks every launch exits 0 and the resumed history equals the uninterrupted one. A rank
that aborted at exit ("terminate called without an active exception", SIGABRT: a gloo worker
asking for the GIL while the interpreter finalized) once did so about one round in twenty;
:func:`pyrovae.runs.processes.leave` ends ranks without finalization. The test runs the
scenario once and never again after a failure; this script is the repeated evidence.

    python benchmarks/torchrun_resume_loop.py --rounds 50

prints one line per round and the count of failed rounds; exit status 1 if any failed (the
stderr of each failed launch is saved beside the rounds' directories).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUICK = ["--dataset", "digits", "--hidden", "32", "--latent-dim", "3", "--no-figures"]


def torchrun(*args: str) -> subprocess.CompletedProcess:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "pyrovae", *args,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def history(run: Path) -> list[dict]:
    records = json.loads((run / "metrics.json").read_text())["history"]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def one_round(root: Path) -> list[subprocess.CompletedProcess]:
    vae = ["train", "vae", *QUICK, "--batch-size", "32", "--quiet"]
    runs = [torchrun(*vae, "--epochs", "3", "--out", str(root / "whole"))]
    runs.append(torchrun(*vae, "--epochs", "2", "--out", str(root / "parts")))
    runs.append(torchrun(*vae, "--epochs", "3", "--out", str(root / "parts"), "--resume"))
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--keep", type=Path, default=Path(tempfile.gettempdir()))
    options = parser.parse_args()
    failed = 0
    for i in range(options.rounds):
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as directory:
            root = Path(directory)
            runs = one_round(root)
            codes = [r.returncode for r in runs]
            same = all(c == 0 for c in codes) and history(root / "parts") == history(root / "whole")
        if not same:
            failed += 1
            text = "\n\n".join(r.stderr for r in runs if r.returncode != 0)
            (options.keep / f"torchrun_round_{i}.stderr").write_text(text)
        seconds = time.perf_counter() - start
        verdict = "equal" if same else "FAILED"
        print(f"round {i + 1}: exit codes {codes}, {verdict}, {seconds:.0f} s", flush=True)
    print(f"{failed} of {options.rounds} rounds failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
