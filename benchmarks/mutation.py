"""Mutation score of the estimator and fitting modules, measured with mutmut.

For each chosen module the script copies the working tree (tracked and untracked, not
ignored, files) into a temporary folder, configures mutmut there (``[tool.mutmut]`` in the
copy's ``pyproject.toml``: the one file to mutate, and the test files that exercise it), runs
``mutmut run`` and reads mutmut's per-mutant verdicts back. The repository itself is never
mutated. Per module it prints the number of mutants, how many the tests killed, how many
survived, timed out, or were reached by no selected test, the share killed, and every mutant
not killed as ``file:line`` with the original and mutated code.

mutmut 3 (pinned in the ``mutation`` extra) forks each mutant's test run from one warm
process, so torch and Pyro are imported once per module rather than once per mutant, and it
runs for each mutant only the selected tests that call the mutated function. Mutants live
inside functions: module-level constants and class attributes are not mutated. mutmut skips
decorated functions; the copy's ``@torch.no_grad()`` functions are rewritten to
``f = torch.no_grad()(f)`` at the end of the module (same line numbers) so that they are
mutated too.

Share killed = (killed + timed out + crashed) / mutants: a mutant that no selected test
reaches counts as not killed.

    nice -n 10 python benchmarks/mutation.py                         # every module, in order
    nice -n 10 python benchmarks/mutation.py --modules infer/scale.py infer/iwae.py
    nice -n 10 python benchmarks/mutation.py --modules infer/em.py --max-mutants 100
    nice -n 10 python benchmarks/mutation.py --modules infer/iwae.py --mutants '*_dreg_loss*'
    nice -n 10 python benchmarks/mutation.py --modules 'models/mixture_stats.py::mixture_m_step' \
        --skip-tests tests/models/test_mixture_m_step.py         # the score without that file
    python benchmarks/mutation.py --list                             # modules and their tests

While the module and its old tests are unchanged, adding tests cannot revive a killed mutant,
so re-running only the survivors (``--mutants NAME ...``) measures the new score.

Needs ``pip install -e '.[mutation]'``. Not part of the test suite (``benchmarks/`` is outside
pytest's ``testpaths``); one module takes minutes to an hour on two CPU cores.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Test files shared by every model's contract (tests/contract.py) and the Trainer's users.
CONTRACT = (
    "tests/models/test_vae.py",
    "tests/models/test_factor_analysis.py",
    "tests/models/test_mixture.py",
    "tests/infer/test_weights.py",
)


# Everything that computes importance weights (importance.py on weights.py).
IMPORTANCE_TESTS = (
    "tests/infer/test_importance.py",
    "tests/infer/test_importance_mutants.py",
    # The idioms of Pyro's examples (plates, masks, scales, point masses), the data plate and
    # the proposals' honest statistics: all reach log_marginal.
    "tests/infer/test_pyro_idioms.py",
    "tests/infer/test_weights_mutants.py",
    "tests/infer/test_proposals.py",
    # log_marginal across ranks, merged in one process (merge_shares, _sharded).
    "tests/infer/test_shares.py",
    "tests/infer/test_importance_fa.py",
    "tests/infer/test_iwae.py",
    "tests/infer/test_psis.py",
    "tests/infer/test_calibration.py",
    "tests/infer/test_denormals.py",
    "tests/infer/test_program.py",
    "tests/diagnostics/test_arviz.py",
    "tests/test_evaluate.py",
    "tests/models/test_ssvae.py",
    *CONTRACT,
)


# The sequence models, their encoders and their batcher.
SEQUENCE_TESTS = (
    "tests/models/test_sequence_vae.py",
    "tests/models/test_dmm.py",
    "tests/data/test_sequence_batches.py",
)

# The auxiliary semi-supervised models (ADGM, SDGM) and their guide.
AUXILIARY_TESTS = ("tests/models/test_adgm.py", "tests/test_cli_ssvae.py")

# A run directory reopened, locked, resumed (the CLI in process, and its faults).
RUN_TESTS = (
    "tests/test_cli.py",
    "tests/test_run_edges.py",
    "tests/test_cli_enumerated.py",
    "tests/test_faults.py",
    "tests/runs/test_factory_inputs.py",
    "tests/runs/test_errors.py",
)


@dataclass(frozen=True)
class Target:
    """One thing to mutate: a source file (or some of its functions) and the tests for it.

    ``tests`` lists test files (missing ones are skipped with a note); mutmut runs, for each
    mutant, only those of their tests that call the mutated function.
    """

    path: str
    tests: tuple[str, ...]
    # Empty: every function of the file. A method is named ``Class.method`` (or by its bare
    # name, which matches that method in every class).
    functions: tuple[str, ...] = ()


# Everything that trains through the Trainer, at one or two ranks.
TRAINER_TESTS = (
    "tests/infer/test_fit.py",
    "tests/infer/test_fit_mutants.py",
    "tests/infer/test_captured.py",
    "tests/infer/test_iwae.py",
    "tests/infer/test_program.py",
    "tests/infer/test_denormals.py",
    "tests/data/test_semisupervised_batches.py",
    "tests/infer/test_em.py",
    "tests/models/test_vae.py",
    "tests/models/test_factor_analysis.py",
    "tests/models/test_ssvae.py",
    "tests/test_options.py",
    "tests/test_run_edges.py",
    # The 2-rank spawn test: data_parallel, the global batch's rows, the gathered
    # streams and the checkpoint's ranks run only under two ranks.
    "tests/infer/test_distributed.py",
)


TARGETS: dict[str, Target] = {
    "infer/scale.py": Target(
        "pyrovae/infer/scale.py",
        (
            "tests/infer/test_scale.py",
            "tests/models/test_vae.py",
            "tests/infer/test_captured.py",
            "tests/infer/test_fit.py",
            "tests/infer/test_fit_mutants.py",
        ),
    ),
    "infer/iwae.py": Target(
        "pyrovae/infer/iwae.py",
        (
            "tests/infer/test_iwae.py",
            "tests/infer/test_iwae_mutants.py",
            "tests/infer/test_calibration.py",
            "tests/infer/test_captured.py",
            "tests/infer/test_fit.py",
            "tests/infer/test_fit_mutants.py",
            *CONTRACT,
        ),
    ),
    "diagnostics/arviz.py": Target(
        "pyrovae/diagnostics/arviz.py",
        (
            "tests/diagnostics/test_arviz.py",
            "tests/diagnostics/test_arviz_mutants.py",
            "tests/test_evaluate.py",
        ),
    ),
    "infer/weights.py": Target(
        "pyrovae/infer/weights.py",
        (
            "tests/infer/test_weights_mutants.py",
            "tests/infer/test_iwae_mutants.py",
            *IMPORTANCE_TESTS,
        ),
    ),
    "infer/importance.py": Target("pyrovae/infer/importance.py", IMPORTANCE_TESTS),
    # Split out of importance.py: the result, one pass of weights, the vectorization check.
    "infer/marginal.py": Target("pyrovae/infer/marginal.py", IMPORTANCE_TESTS),
    "infer/passes.py": Target("pyrovae/infer/passes.py", IMPORTANCE_TESTS),
    "infer/vectorized.py": Target("pyrovae/infer/vectorized.py", IMPORTANCE_TESTS),
    "models/mixture_stats.py::mixture_m_step": Target(
        "pyrovae/models/mixture_stats.py",
        (
            "tests/models/test_mixture_m_step.py",
            "tests/models/test_mixture_em.py",
            "tests/models/test_mixture.py",
        ),
        functions=("mixture_m_step",),
    ),
    "models/mixture_stats.py": Target(
        "pyrovae/models/mixture_stats.py",
        (
            "tests/models/test_mixture_m_step.py",
            "tests/models/test_mixture_em.py",
            "tests/models/test_mixture.py",
        ),
    ),
    "models/mixture_em.py": Target(
        "pyrovae/models/mixture_em.py",
        (
            "tests/models/test_mixture_em.py",
            "tests/models/test_mixture_em_mutants.py",
            "tests/models/test_mixture.py",
        ),
    ),
    # The generic driver, on factor analysis and on the mixture (fit_mixture runs through it).
    "infer/em.py": Target(
        "pyrovae/infer/em.py",
        ("tests/infer/test_em.py", "tests/models/test_mixture_em.py"),
    ),
    # The Trainer: infer/fit.py until it was split (issue 38) into trainer.py, params.py,
    # evaluate.py and streams.py; the scores of "infer/fit.py" in docs/development.md were
    # measured on the file before the split, whose functions moved unchanged.
    "infer/trainer.py": Target("pyrovae/infer/trainer.py", TRAINER_TESTS),
    # What the Trainer collects, evaluates, saves and follows, split out of it (issue 38).
    "infer/params.py": Target(
        "pyrovae/infer/params.py",
        (*TRAINER_TESTS, "tests/infer/test_params.py", "tests/infer/test_modes.py"),
    ),
    "infer/evaluate.py": Target(
        "pyrovae/infer/evaluate.py",
        (
            *TRAINER_TESTS,
            "tests/infer/test_evaluate_elbo.py",
            "tests/infer/test_batch_source.py",
            "tests/infer/test_pyro_idioms.py",
        ),
    ),
    "infer/streams.py": Target(
        "pyrovae/infer/streams.py",
        (
            *TRAINER_TESTS,
            "tests/infer/test_streams.py",
            "tests/test_checkpoint.py",
            "tests/test_rng.py",
        ),
    ),
    "infer/schedule.py": Target(
        "pyrovae/infer/schedule.py", ("tests/infer/test_schedule.py", "tests/test_options.py")
    ),
    "infer/graph_losses.py": Target(
        "pyrovae/infer/graph_losses.py",
        (
            "tests/infer/test_graph_losses.py",
            "tests/infer/test_captured.py",
            "tests/infer/test_captured_enum.py",
        ),
    ),
    # Issue 34: the modules added since the estimators were scored.
    "models/sequence_vae.py": Target("pyrovae/models/sequence_vae.py", SEQUENCE_TESTS),
    "models/dmm.py": Target(
        "pyrovae/models/dmm.py", (*SEQUENCE_TESTS, "tests/infer/test_terms.py")
    ),
    "guides/sequence.py": Target("pyrovae/guides/sequence.py", SEQUENCE_TESTS),
    # The sequence batcher: SequenceData, the bucket lengths and SequenceBatches. The key
    # keeps its name (its results files are benchmarks/results/mutation/
    # infer_batches.py__sequences.*): those results were measured when this code lived in
    # pyrovae/infer/batches.py; it now lives in pyrovae/data/sequence_batches.py.
    "infer/batches.py::sequences": Target(
        "pyrovae/data/sequence_batches.py",
        (*SEQUENCE_TESTS, "tests/test_cli_sequences.py"),
        functions=(
            "SequenceData.__post_init__",
            "SequenceData.tensors",
            "SequenceData.to",
            "bucket_length",
            "_next_bucket",
            "SequenceBatches.__init__",
            "SequenceBatches._order",
            "SequenceBatches._finish",
        ),
    ),
    "models/mixture_vae.py": Target(
        "pyrovae/models/mixture_vae.py",
        (
            "tests/models/test_mixture_vae.py",
            "tests/infer/test_captured_enum.py",
            "tests/test_cli_mixture_vae.py",
        ),
    ),
    "diagnostics/clustering.py": Target(
        "pyrovae/diagnostics/clustering.py",
        (
            "tests/diagnostics/test_clustering.py",
            "tests/models/test_mixture_vae.py",
            "tests/test_cli_mixture_vae.py",
        ),
    ),
    "models/adgm.py": Target("pyrovae/models/adgm.py", AUXILIARY_TESTS),
    "guides/auxiliary.py": Target("pyrovae/guides/auxiliary.py", AUXILIARY_TESTS),
    "infer/discrete.py": Target(
        "pyrovae/infer/discrete.py",
        (
            "tests/infer/test_discrete.py",
            "tests/infer/test_pyro_idioms.py",
            "tests/infer/test_captured.py",
            "tests/models/test_mixture.py",
            "tests/models/test_mixture_vae.py",
            "tests/infer/test_weights.py",
        ),
    ),
    # The data plate (infer/plates.py, split out of weights.py), and weights.py's sums over
    # the plates other than the data plate.
    "infer/plates.py": Target(
        "pyrovae/infer/plates.py", ("tests/infer/test_weights_mutants.py", *IMPORTANCE_TESTS)
    ),
    "infer/weights.py::plates": Target(
        "pyrovae/infer/weights.py",
        ("tests/infer/test_weights_mutants.py", *IMPORTANCE_TESTS),
        functions=("per_example_sum", "_contract"),
    ),
    # How each site enters the weights, and the refusals (split out of weights.py).
    "infer/sites.py": Target(
        "pyrovae/infer/sites.py", ("tests/infer/test_weights_mutants.py", *IMPORTANCE_TESTS)
    ),
    "infer/distributed.py": Target(
        "pyrovae/infer/distributed.py",
        ("tests/infer/test_distributed.py", "tests/infer/test_fit.py"),
    ),
    "runs/reopen.py": Target("pyrovae/runs/reopen.py", RUN_TESTS),
    "runs/lock.py": Target("pyrovae/runs/lock.py", RUN_TESTS),
}

#: mutmut's exit codes per verdict (mutmut.stats.status_by_exit_code), folded into our columns.
KILLED = {1, 3}
SURVIVED = {0}
TIMEOUT = {36, -24, 24, 152, 255}
NO_TESTS = {5, 33}
CRASHED = {-11, -9}


@dataclass
class Mutant:
    """One mutant: mutmut's name, where it is, what it changes, and mutmut's exit code."""

    name: str
    line: int
    original: str
    mutated: str
    exit_code: int | None = None

    @property
    def status(self) -> str:
        code = self.exit_code
        if code is None:
            return "not checked"
        for status, codes in (
            ("killed", KILLED),
            ("survived", SURVIVED),
            ("timeout", TIMEOUT),
            ("no tests", NO_TESTS),
            ("crashed", CRASHED),
        ):
            if code in codes:
                return status
        return f"exit {code}"


@dataclass
class Report:
    """The outcome for one target."""

    key: str
    path: str
    tests: list[str]
    deselected: list[str] = field(default_factory=list)
    mutants: list[Mutant] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""

    def counts(self) -> Counter:
        return Counter(m.status for m in self.mutants)

    def share_killed(self) -> float:
        c = self.counts()
        detected = c["killed"] + c["timeout"] + c["crashed"]
        return detected / len(self.mutants) if self.mutants else float("nan")


@contextmanager
def working_directory(path: Path) -> Iterator[None]:
    """chdir for mutmut's helpers, which read ``pyproject.toml`` and ``mutants/`` from cwd."""
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def copy_tree(dest: Path) -> None:
    """The working tree's tracked and untracked-but-not-ignored files, as ``git`` lists them
    (read-only), else everything but caches; plus a link to ``../shared`` (test data)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        listed = [
            str(p.relative_to(ROOT))
            for p in ROOT.rglob("*")
            if p.is_file() and not {".git", "__pycache__", "mutants"} & set(p.parts)
        ]
    for name in listed:
        source = ROOT / name
        if source.is_file():  # a deleted, not yet committed file is still listed
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    shared = ROOT.parent / "shared"
    if shared.is_dir():
        (dest / "shared").symlink_to(shared)  # tests/conftest.py looks beside the repository


def undecorate(path: Path) -> list[str]:
    """Rewrite decorated module-level functions ``@d def f`` as ``def f`` + ``f = (d)(f)`` at
    the end of the module, keeping line numbers (the decorator lines become comments), so that
    mutmut, which skips decorated functions, mutates them. Returns the functions rewritten."""
    source = path.read_text()
    lines = source.splitlines()
    tail, names = [], []
    for node in ast.parse(source).body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or not node.decorator_list:
            continue
        for decorator in reversed(node.decorator_list):  # the lowest decorator applies first
            tail.append(f"{node.name} = ({ast.get_source_segment(source, decorator)})({node.name})")
        for decorator in node.decorator_list:
            for i in range(decorator.lineno - 1, decorator.end_lineno):
                indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
                lines[i] = f"{indent}# decorator applied at the end of the module (mutation.py)"
        names.append(node.name)
    if names:
        path.write_text("\n".join(lines + ["", *tail]) + "\n")
    return names


def configure(copy: Path, target: Target, tests: list[str], deselect: list[str], args) -> None:
    """The repository's pyproject.toml plus mutmut's settings, written into the copy."""
    pytest_args = ["-p", "no:cacheprovider"] + [f"--deselect={node}" for node in deselect]
    settings = {
        "source_paths": ["pyrovae"],
        "only_mutate": [target.path],
        "pytest_add_cli_args_test_selection": tests,
        "pytest_add_cli_args": pytest_args,
        "timeout_multiplier": args.timeout_multiplier,
        "use_git_change_detection": False,
        "debug": False,
    }
    with open(copy / "pyproject.toml", "w") as f:
        f.write((ROOT / "pyproject.toml").read_text())
        f.write("\n[tool.mutmut]\n")
        for key, value in settings.items():
            f.write(f"{key} = {json.dumps(value)}\n")


#: Appended to the copy's tests/conftest.py. mutmut forks every mutant's test run from one
#: warm process. tqdm guards its output with a multiprocessing lock (a semaphore the forked
#: children share) and a thread lock that its monitor thread takes: a child killed at its
#: timeout while writing a bar, or a fork while the monitor holds the lock, leaves every later
#: child waiting forever at its first progress bar, and each then counts as a timeout. So the
#: children use a thread lock of their own, made after the fork, and no monitor thread.
FORK_SAFE_TQDM = """

# Added by benchmarks/mutation.py: tqdm's locks made safe for mutmut's forked test runs.
import os as _mutation_os
import threading as _mutation_threading

import tqdm as _mutation_tqdm
from tqdm.std import TqdmDefaultWriteLock as _MutationLock

_mutation_tqdm.tqdm.monitor_interval = 0
_MutationLock.mp_lock = None


def _mutation_fresh_tqdm_lock():
    _MutationLock.th_lock = _mutation_threading.RLock()
    _mutation_tqdm.tqdm.set_lock(_MutationLock())


_mutation_fresh_tqdm_lock()
_mutation_os.register_at_fork(after_in_child=_mutation_fresh_tqdm_lock)


# mutmut's first pass ("stats": which tests reach which function) records each hit through
# its configuration, read from the working directory; a test's subprocess run from another
# directory (python -m pyrovae inside a run directory) cannot read it and crashes. Such a
# subprocess runs the original code in that pass, unrecorded (MUTMUT_DEPENDENCY_DEPTH=0), so
# a test reaching a function only through a subprocess is not chosen to kill its mutants:
# the score then counts only what the tests reach in process.
import subprocess as _mutation_subprocess

_mutation_popen_init = _mutation_subprocess.Popen.__init__


def _mutation_popen(self, *args, env=None, **kwargs):
    if _mutation_os.environ.get("MUTANT_UNDER_TEST") == "stats":
        env = {**(_mutation_os.environ if env is None else env), "MUTMUT_DEPENDENCY_DEPTH": "0"}
    _mutation_popen_init(self, *args, env=env, **kwargs)


_mutation_subprocess.Popen.__init__ = _mutation_popen
"""


def make_fork_safe(tests_dir: Path) -> None:
    """Append :data:`FORK_SAFE_TQDM` (tqdm's locks, and tests' subprocesses in mutmut's
    first pass) to ``tests_dir / "conftest.py"`` (once)."""
    conftest = tests_dir / "conftest.py"
    text = conftest.read_text() if conftest.exists() else ""
    if "_mutation_fresh_tqdm_lock" not in text:
        conftest.write_text(text + FORK_SAFE_TQDM)


def enumerate_mutants(copy: Path, target: Target) -> list[Mutant]:
    """Every mutant mutmut makes of the target, named as mutmut names them, with its line.

    Uses mutmut 3.8's own visitor (the pinned version), as ``mutate_file_contents`` does, to
    read each mutation's position; mutmut numbers the mutants of one function 1, 2, ... in
    the visitor's order.
    """
    import libcst as cst
    from libcst.metadata import MetadataWrapper, PositionProvider
    from mutmut.configuration import reset_config
    from mutmut.mutation.file_mutation import MutationVisitor
    from mutmut.mutation.mutators import mutation_operators
    from mutmut.mutation.pragma_handling import get_ignored_lines
    from mutmut.mutation.trampoline_templates import mangle_function_name
    from mutmut.utils.format_utils import get_mutant_name

    with working_directory(copy):
        reset_config()  # mutmut caches the configuration it read from the cwd
        code = Path(target.path).read_text()
        wrapper = MetadataWrapper(cst.parse_module(code))
        ignored = get_ignored_lines(target.path, code, wrapper)
        visitor = MutationVisitor(mutation_operators, ignored, None)
        wrapper.visit(visitor)
        positions = wrapper.resolve(PositionProvider)
    class_of = {
        id(method): node.name.value
        for node in wrapper.module.body
        if isinstance(node, cst.ClassDef) and isinstance(node.body, cst.IndentedBlock)
        for method in node.body.body
    }
    numbered: Counter = Counter()
    mutants = []
    render = wrapper.module.code_for_node
    for mutation in visitor.mutations:
        function = mutation.contained_by_top_level_function
        if not isinstance(function, cst.FunctionDef):  # module-level code: mutmut leaves it
            continue
        mangled = mangle_function_name(
            name=function.name.value, class_name=class_of.get(id(function))
        )
        numbered[mangled] += 1
        qualified = (
            f"{class_of[id(function)]}.{function.name.value}" if id(function) in class_of else None
        )
        if target.functions and not {function.name.value, qualified} & set(target.functions):
            continue
        name = get_mutant_name(Path(target.path), f"{mangled}__mutmut_{numbered[mangled]}")
        line = positions[mutation.original_node].start.line
        mutants.append(
            Mutant(name, line, render(mutation.original_node), render(mutation.mutated_node))
        )
    return mutants


def select(mutants: list[Mutant], limit: int | None) -> list[Mutant]:
    """At most ``limit`` mutants, evenly spaced through the file (deterministic)."""
    if limit is None or len(mutants) <= limit:
        return mutants
    return [mutants[i * len(mutants) // limit] for i in range(limit)]


def failing_tests(copy: Path, tests: list[str], env: dict) -> list[str]:
    """Node ids of the selected tests that fail on the unmutated copy (others' work in
    progress, say): mutmut needs a clean pass, so these are deselected and reported."""
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", *tests],
        cwd=copy,
        capture_output=True,
        text=True,
        env=env,
    )
    failed = []
    for line in run.stdout.splitlines():
        match = re.match(r"(?:FAILED|ERROR) (\S+)", line)
        if match:
            failed.append(match.group(1))
    if run.returncode not in (0, 1) and not failed:
        raise RuntimeError(f"pytest could not run the selection:\n{run.stdout[-3000:]}")
    return failed


def run_target(key: str, args) -> Report:
    target = TARGETS[key]
    tests = [t for t in target.tests if (ROOT / t).is_file() and t not in args.skip_tests]
    report = Report(key, target.path, tests)
    missing = sorted(set(target.tests) - set(tests) - set(args.skip_tests))
    print(f"\n== {key}: mutating {target.path}", flush=True)
    if missing:
        print(f"   (test files not present, left out: {', '.join(missing)})")
    skipped = sorted(set(target.tests) & set(args.skip_tests))
    if skipped:
        print(f"   (left out by --skip-tests: {', '.join(skipped)})")
    print(f"   tests: {' '.join(tests)}", flush=True)
    start = time.perf_counter()
    resume = args.resume is not None
    copy = Path(args.resume) if resume else Path(tempfile.mkdtemp(prefix="pyrovae-mutation-"))
    env = {
        **os.environ,
        # One thread: the machine is shared, and forking a process with a live OpenMP pool
        # is not safe.
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONHASHSEED": "0",
    }
    try:
        if resume:  # the copy, its configuration and mutmut's verdicts so far, as they were
            print(f"   resuming in {copy}")
            for tests_dir in (copy / "tests", copy / "mutants" / "tests"):
                if tests_dir.is_dir():
                    make_fork_safe(tests_dir)
        else:
            copy_tree(copy)
            make_fork_safe(copy / "tests")
            rewritten = undecorate(copy / target.path)
            if rewritten:
                print(f"   decorators moved below the module for: {', '.join(rewritten)}")
            configure(copy, target, tests, [], args)
        mutants = enumerate_mutants(copy, target)
        if args.mutants:
            mutants = [
                m for m in mutants if any(fnmatch.fnmatch(m.name, glob) for glob in args.mutants)
            ]
        chosen = select(mutants, args.max_mutants)
        if not chosen:
            report.error = "no mutants match"
            return report
        if len(chosen) < len(mutants):
            print(f"   {len(chosen)} of {len(mutants)} mutants, evenly spaced (--max-mutants)")
        if not resume:
            report.deselected = failing_tests(copy, tests, env)
            for node in report.deselected:
                print(f"   deselected (fails without any mutation): {node}")
            configure(copy, target, tests, report.deselected, args)
        whole_file = len(chosen) == len(mutants) and not (target.functions or args.mutants)
        names = [] if whole_file else [m.name for m in chosen]
        command = ["mutmut", "run", f"--max-children={args.max_children}", *names]
        log = copy / "mutmut.log"
        with open(log, "a") as out:
            process = subprocess.Popen(
                command, cwd=copy, stdout=out, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,
            )  # fmt: skip
            try:
                process.wait(timeout=args.timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait()
                report.error = f"stopped after --timeout {args.timeout} s"
        if process.returncode not in (0, None) and not report.error:
            report.error = f"mutmut exited {process.returncode}; log tail:\n" + "\n".join(
                log.read_text(errors="replace").splitlines()[-25:]
            )
        meta = copy / "mutants" / (target.path + ".meta")
        codes = json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}
        unknown = set(m.name for m in chosen) - set(codes)
        if codes and unknown:
            report.error += f"\n{len(unknown)} mutants not in mutmut's list (naming changed?)"
        for m in chosen:
            m.exit_code = codes.get(m.name)
        report.mutants = chosen
        if args.keep:
            print(f"   kept: {copy}")
    finally:
        report.seconds = time.perf_counter() - start
        if not (args.keep or resume):
            shutil.rmtree(copy, ignore_errors=True)
    return report


def excerpts(original: str, mutated: str, width: int = 100) -> tuple[str, str]:
    """The two codes on one line each, cut to the part that differs (with context)."""
    a, b = " ".join(original.split()), " ".join(mutated.split())
    if max(len(a), len(b)) <= width:
        return a, b
    start = 0
    while start < min(len(a), len(b)) and a[start] == b[start]:
        start += 1
    end = 0
    while end < min(len(a), len(b)) - start and a[-1 - end] == b[-1 - end]:
        end += 1
    context = max(10, (width - max(len(a), len(b)) + start + end) // 2)

    def cut(code: str) -> str:
        lo, hi = max(0, start - context), min(len(code), len(code) - end + context)
        return ("..." if lo else "") + code[lo:hi] + ("..." if hi < len(code) else "")

    return cut(a), cut(b)


def print_report(report: Report) -> None:
    c = report.counts()
    print(
        f"   mutants {len(report.mutants)}  killed {c['killed']}  survived {c['survived']}  "
        f"timeout {c['timeout']}  no tests {c['no tests']}  crashed {c['crashed']}  "
        f"not checked {c['not checked']}  share killed {100 * report.share_killed():.1f}%  "
        f"({report.seconds:.0f} s)"
    )
    if report.error:
        print(f"   ERROR: {report.error}")
    for m in sorted(report.mutants, key=lambda m: (m.line, m.name)):
        if m.status in ("killed", "timeout", "crashed"):
            continue
        print(f"   {report.path}:{m.line} [{m.status}] {m.name.rpartition('.')[2]}")
        original, mutated = excerpts(m.original, m.mutated)
        print(f"       - {original}")
        print(f"       + {mutated}")
    sys.stdout.flush()


def print_table(reports: list[Report]) -> None:
    print("\n| module | mutants | killed | survived | timeout | no tests | share killed | time |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in reports:
        c = r.counts()
        print(
            f"| `{r.key}` | {len(r.mutants)} | {c['killed']} | {c['survived']} | {c['timeout']} "
            f"| {c['no tests']} | {100 * r.share_killed():.1f}% | {r.seconds / 60:.0f} min |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--modules", nargs="+", default=list(TARGETS), choices=list(TARGETS), metavar="MODULE",
        help=f"what to mutate, in order (default: all): {', '.join(TARGETS)}",
    )  # fmt: skip
    parser.add_argument(
        "--max-mutants", type=int, help="test at most this many mutants per module, evenly spaced"
    )
    parser.add_argument(
        "--timeout", type=float, help="wall-clock seconds per module; unchecked mutants reported"
    )
    parser.add_argument(
        "--timeout-multiplier", type=float, default=5.0,
        help="a mutant times out after 2 x this x (its tests' clean CPU time + 1 s) (mutmut's)",
    )  # fmt: skip
    parser.add_argument(
        "--mutants", nargs="+", metavar="GLOB",
        help="only mutants whose mutmut name matches (e.g. '*compare_log_likelihoods*')",
    )  # fmt: skip
    parser.add_argument(
        "--skip-tests", nargs="+", default=[], metavar="FILE",
        help="leave these test files out of the selection (to measure a score without them)",
    )  # fmt: skip
    parser.add_argument("--max-children", type=int, default=1, help="mutants tested at once")
    parser.add_argument("--json", type=Path, help="also write every verdict to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copies")
    parser.add_argument(
        "--resume", type=Path, metavar="DIR",
        help="continue an interrupted run in its kept copy DIR (one module; mutmut skips the "
        "mutants it has a verdict for)",
    )  # fmt: skip
    parser.add_argument("--list", action="store_true", help="print modules and tests, run nothing")
    args = parser.parse_args(argv)
    if args.list:
        for key, target in TARGETS.items():
            print(f"{key}: {target.path} {list(target.functions) or ''}")
            print(f"    {' '.join(target.tests)}")
        return 0
    if args.resume is not None and len(args.modules) != 1:
        parser.error("--resume continues one module: name it with --modules")
    if shutil.which("mutmut") is None:
        parser.error("mutmut is not installed: pip install -e '.[mutation]'")
    reports = []
    for key in args.modules:
        report = run_target(key, args)
        print_report(report)
        reports.append(report)
        if args.json:
            args.json.write_text(
                json.dumps(
                    [
                        {
                            "module": r.key,
                            "path": r.path,
                            "tests": r.tests,
                            "deselected": r.deselected,
                            "seconds": round(r.seconds, 1),
                            "error": r.error,
                            "counts": dict(r.counts()),
                            "share_killed": r.share_killed(),
                            "mutants": [m.__dict__ | {"status": m.status} for m in r.mutants],
                        }
                        for r in reports
                    ],
                    indent=1,
                )
            )
    print_table(reports)
    return 0 if all(not r.error for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
