"""The README's command list is the CLI's: a command added or renamed fails here until the
README says so, and every option the README shows is one the command accepts. The ways the
README runs things work: the CLI where `uv` came from pip and is not on PATH, `make up`'s
ports as make variables."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import typer.main

import cli.main  # noqa: F401  (registers every command module)
from cli.app import app

PROJECT = Path(__file__).resolve().parents[2]
README = PROJECT / "README.md"


def _readme_commands() -> dict[str, set[str]]:
    text = README.read_text(encoding="utf-8")
    block = text.split("## Command line", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    commands: dict[str, set[str]] = {}
    for line in block.strip().splitlines():
        usage = re.split(r"\s{2,}", line.strip())[0] if "  " in line else line.strip()
        words = usage.split()
        assert words[0] == "daai-backup", line
        options = set(re.findall(r"--[a-z-]+", usage))
        for name in words[1].split("|"):
            commands[name] = options
    return commands


def test_readme_lists_exactly_the_cli_commands_with_real_options() -> None:
    group = typer.main.get_command(app)
    real = {
        name: {opt for param in command.params for opt in param.opts if opt.startswith("--")}
        for name, command in group.commands.items()  # type: ignore[attr-defined]
    }
    documented = _readme_commands()
    assert set(documented) == set(real) - {"up"}  # `make up` is how the README starts the stack
    for name, options in documented.items():
        assert options <= real[name], f"{name}: README shows {options - real[name]}"


# -- the README's ways of running things work where `uv` is not on PATH -------------------


def _python_with_uv() -> Path | None:
    """A real python3 on PATH (past this virtual environment and pyenv's shims) that has
    pip's `uv` module, or None."""
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder) / "python3"
        if not candidate.exists():
            continue
        probe = subprocess.run(
            [str(candidate), "-c", "import sys, uv; print(sys.executable)"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0:
            return Path(probe.stdout.strip())
    return None


@pytest.fixture
def path_without_uv(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH has `python3` (with pip's uv) and make, but no `uv`."""
    python = _python_with_uv()
    if python is None:
        pytest.skip("no python3 with pip's uv module on this machine")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(python)
    path = f"{bin_dir}:/usr/bin:/bin"
    assert shutil.which("uv", path=path) is None
    assert shutil.which("make", path=path) is not None
    return {**os.environ, "PATH": path}


def _readme_shell_lines() -> list[str]:
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)
    return [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]


def test_readme_cli_invocations_work_without_uv_on_path(path_without_uv: dict[str, str]) -> None:
    text = README.read_text(encoding="utf-8")
    lines = _readme_shell_lines()
    assert 'make cli ARGS="list --tenant acme-hr"' in lines
    assert "var/daai-backup list --tenant acme-hr" in lines  # tests/deployments/test_deploy_stack
    assert "`python3 -m uv run daai-backup ...`" in text
    # The same invocations, with a command that needs no running stack.
    via_make = subprocess.run(
        ["make", "--no-print-directory", "cli", "ARGS=keygen"],
        cwd=PROJECT,
        env=path_without_uv,
        capture_output=True,
        text=True,
        check=False,
    )
    assert via_make.returncode == 0, via_make.stderr
    assert len(base64.b64decode(via_make.stdout.split()[0], validate=True)) == 32
    via_pip_uv = subprocess.run(
        ["python3", "-m", "uv", "run", "daai-backup", "keygen"],
        cwd=PROJECT,
        env=path_without_uv,
        capture_output=True,
        text=True,
        check=False,
    )
    assert via_pip_uv.returncode == 0, via_pip_uv.stderr
    assert len(base64.b64decode(via_pip_uv.stdout.split()[0], validate=True)) == 32


def test_make_up_takes_its_ports_as_variables() -> None:
    assert "make up MONGO_PORT=27900 PREFECT_PORT=4300" in README.read_text(encoding="utf-8")
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", "up", "MONGO_PORT=27900", "PREFECT_PORT=4300"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=True,
    )
    command = " ".join(dry.stdout.replace("\\\n", " ").split())
    assert "-m deployments.stack up --mongo-port 27900 --prefect-port 4300" in command
    defaults = subprocess.run(
        ["make", "--no-print-directory", "-n", "up"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--mongo-port 27817 --prefect-port 4200" in " ".join(defaults.stdout.split())
