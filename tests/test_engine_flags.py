"""`compare` evaluates checkpoints through the same runner as `run`: it must take every
engine setting `run` takes (one definition, commands/engine_options), and each must reach
EngineSettings."""

from __future__ import annotations

import dataclasses

import typer

from sfteval.cli import app
from sfteval.commands import engine_options as eo
from sfteval.config import EngineSettings


def _options(name: str) -> dict[str, object]:
    group = typer.main.get_command(app)
    cmd = group.commands[name]  # type: ignore[attr-defined]
    return {opt: p for p in cmd.params for opt in getattr(p, "opts", [])}


def test_compare_takes_every_engine_and_data_flag_of_run() -> None:
    run, compare = _options("run"), _options("compare")
    shared = set(eo.ENGINE_FLAGS) | {"--fewshot-data", "--bertscore-model", "--data", "--backend", "--chat-template",
                                     "--limit", "--suite", "--benchmark", "--train-data"}
    assert shared <= set(run), shared - set(run)
    assert shared <= set(compare), shared - set(compare)
    engine_panel = {o for o, p in run.items() if getattr(p, "rich_help_panel", None) == eo.PANEL}
    assert engine_panel <= set(compare), engine_panel - set(compare)
    assert run["--trust-remote-code"].is_flag and compare["--trust-remote-code"].is_flag  # type: ignore[attr-defined]


def test_every_engine_flag_sets_a_field() -> None:
    fields = {f.name for f in dataclasses.fields(EngineSettings)} - {"api_key_env"}
    flags = {f.lstrip("-").replace("-", "_") for f in eo.ENGINE_FLAGS}
    assert flags == fields, fields ^ flags
    kw = {name: object() for name in flags}
    settings = eo.engine_settings(**kw)  # type: ignore[arg-type]
    assert all(getattr(settings, name) is kw[name] for name in flags)
