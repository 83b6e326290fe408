"""The README's Python usage runs as written, and its set-up commands are the ones CI runs."""

import re

import pytest

from conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"```bash\n(.*?)```", README, re.S)[0].strip().splitlines()
    assert len(commands) == 2, "the README starts with exactly two commands: the main job and the tests"
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


@pytest.mark.slow
def test_python_usage_section_runs(smollm2_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks, "the README has a Python usage section"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {"__name__": "readme"})
