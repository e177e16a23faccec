"""The README's quick start and CI stay one and the same command."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section, flags=re.S)


def test_quick_start_has_exactly_two_commands_studio_then_tests():
    commands = quick_start_commands()
    assert len(commands) == 2, commands
    assert commands[0].endswith("python app.py")
    assert "python -m pytest" in commands[1] and "ruff check ." in commands[1]


def test_ci_runs_the_readme_test_command_and_nothing_else():
    lines = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith("#") and not line.startswith(("set ", "cd "))
    ]
    assert lines == [quick_start_commands()[1]]
