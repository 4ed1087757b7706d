"""The README's Python example runs as written, and its quick start names real commands."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_python_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no Python example"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        namespace: dict = {"__name__": "readme_example"}
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - our own README
    assert namespace["images"].shape == (16, 8, 8)
    assert namespace["history"][-1]["test_elbo"] > 0


def test_quick_start_is_two_commands_that_exist():
    text = README.read_text()
    assert "pip install -e . && pyrovae train vae --out runs/vae" in text
    assert 'pip install -e ".[test]" && pytest' in text
