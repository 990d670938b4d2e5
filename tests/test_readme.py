"""The README's examples run, and its first command's steps work."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


def test_readme_opens_with_exactly_two_commands():
    first = re.search(r"```sh\n(.*?)```", README, re.S).group(1).strip().splitlines()
    assert len(first) == 2
    assert first[0].startswith("pip install . && actgen new serf")
    assert first[1] == "pip install '.[test]' && python -m pytest -q"


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_examples_run(index, tmp_path):
    assert BLOCKS, "the README has no python examples"
    import importlib.util

    for extra in ("torch", "jax"):      # the optional extras' examples run where they are installed
        if re.search(rf"^import {extra}\b", BLOCKS[index], re.M) and importlib.util.find_spec(extra) is None:
            pytest.skip(f"{extra} is not installed (pip install '.[{extra}]')")
    out = subprocess.run([sys.executable, "-c", BLOCKS[index]], cwd=tmp_path, capture_output=True,
                         text=True, env=dict(os.environ), timeout=300)
    assert out.returncode == 0, out.stderr


def test_readme_first_command_after_the_install(tmp_path):
    """The first command, minus `pip install .` (the test environment has actgen installed)."""
    steps = re.search(r"```sh\n(.*?)```", README, re.S).group(1).strip().splitlines()[0]
    steps = steps.split("&&", 1)[1]
    out = subprocess.run(steps, shell=True, cwd=tmp_path, capture_output=True, text=True,
                         env=dict(os.environ), timeout=600)
    assert out.returncode == 0, out.stderr
    assert "void actgen_serf_forward_f32(" in out.stdout
    assert "gelu_tanh" in out.stdout               # the built-ins were built too


def test_readme_speed_table_is_the_committed_benchmark_summary():
    """The README's speed table and the commit it names are benchmarks/summary.md's, and that file
    is what benchmarks/summary.py writes from the committed benchmarks/results.json."""
    summary = (ROOT / "benchmarks" / "summary.md").read_text()
    regenerated = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "summary.py")], cwd=ROOT,
                                 capture_output=True, text=True, timeout=120)
    assert regenerated.returncode == 0, regenerated.stderr
    assert regenerated.stdout == summary, "regenerate: python benchmarks/summary.py > benchmarks/summary.md"
    speed = README.split("\n## Speed\n", 1)[1].split("\n## ", 1)[0]

    def table(text):
        return [line for line in text.splitlines() if line.startswith("| ")]
    assert table(speed) and table(speed) == table(summary), "paste benchmarks/summary.md's table into the README"
    commit = re.search(r"actgen commit (\w+)", summary).group(1)
    assert f"actgen commit {commit}" in speed
    # the AVX2 host's run beside it: its summary is what summary.py writes from its JSON
    avx2 = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "summary.py"), "benchmarks/results-avx2.json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert avx2.returncode == 0 and avx2.stdout == (ROOT / "benchmarks" / "summary-avx2.md").read_text()
    assert "actgen commit " + re.search(r"actgen commit (\w+)", avx2.stdout).group(1) in speed
