"""Documentation matches the code: every attribute key, setting and CLI command is documented, and
the package installs only under the govtrace namespace."""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
from pathlib import Path

from govtrace.collector.cli import build_parser
from govtrace.collector.config import CollectorConfig
from govtrace.instrumentation import attributes

ROOT = Path(__file__).resolve().parent.parent


def test_every_attribute_key_is_documented():
    doc = (ROOT / "docs" / "attributes.md").read_text()
    missing = [f"{name} = {key}" for name, key in attributes.all_keys().items() if f"`{key}`" not in doc
               and key not in doc]
    assert missing == [], f"undocumented attribute keys in docs/attributes.md: {missing}"


def test_every_collector_setting_is_documented_with_its_environment_variable():
    doc = (ROOT / "docs" / "configuration.md").read_text()
    for field in dataclasses.fields(CollectorConfig):
        assert f"`{field.name}`" in doc, f"setting {field.name} missing from docs/configuration.md"
        assert f"GOVTRACE_{field.name.upper()}" in doc, f"GOVTRACE_{field.name.upper()} missing"


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_cli_command_and_option_is_documented():
    doc = (ROOT / "docs" / "cli.md").read_text()
    missing = []
    for name, sub in _subcommands(build_parser()).items():
        if f"govtrace {name}" not in doc:
            missing.append(f"govtrace {name}")
        for action in sub._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help" and option not in doc:
                    missing.append(f"govtrace {name} {option}")
    assert missing == [], f"undocumented in docs/cli.md: {missing}"


def test_every_subpackage_is_listed_for_installation_under_the_govtrace_namespace():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = config["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    mapping = setuptools["package-dir"]
    assert all(name.startswith("govtrace.") for name in listed)
    expected = set()
    for package, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            if any(part.startswith((".", "__")) for part in relative.parts):
                continue
            expected.add(".".join([package, *relative.parts]))
    assert expected - listed == set(), f"packages missing from pyproject [tool.setuptools] packages: {expected - listed}"


def test_readme_gives_the_two_setup_commands_first():
    readme = (ROOT / "README.md").read_text()
    first_code = readme.split("```")[1]
    assert "make demo" in first_code and "make test" in first_code
