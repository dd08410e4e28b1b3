"""The README's command list is the CLI's: a command added or renamed fails here until the
README says so, and every option the README shows is one the command accepts. `make up`
takes its ports as make variables, as the README says."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

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
