"""compare: alignment by id, mismatch refusal, verdicts, Holm, and the CLI (incl. checkpoints)."""

from __future__ import annotations

import copy
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from runfolders import FakeBench, write_run
from sfteval.compare import (
    COMPARE_SCHEMA,
    CompareSettings,
    compare_runs,
    forgetting_verdict,
    load_run,
)
from sfteval.errors import SftevalError
from sfteval.runfolder import read_comparison


def load_comparison(path: Path) -> dict:
    return read_comparison(path).to_dict()


def run_cli(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    from sfteval.cli import main

    monkeypatch.setattr(sys, "argv", ["sfteval", *argv])
    with pytest.raises(SystemExit) as exc:
        main()
    return int(exc.value.code or 0)


def _scores(seed: int, n: int = 300, drop: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    q = rng.beta(0.6, 0.4, n)
    return (rng.random(n) < q).astype(float), (rng.random(n) < np.clip(q - drop, 0, 1)).astype(float)


@pytest.mark.parametrize(
    ("ci", "margin", "verdict", "detail"),
    [
        ((-0.08, -0.02), 0.01, "forgot", "drop beyond margin"),
        ((-0.08, -0.005), 0.01, "no evidence", "drop, but not shown beyond margin"),
        ((-0.005, 0.008), 0.01, "no evidence", "within margin"),
        ((-0.05, 0.05), 0.01, "no evidence", "inconclusive: CI wider than margin"),
        ((0.002, 0.05), 0.01, "no evidence", "gain, but not shown beyond margin"),
        ((0.02, 0.05), 0.01, "improved", "gain beyond margin"),
        ((-0.03, -0.001), 0.0, "forgot", "drop beyond margin"),
    ],
)
def test_forgetting_verdict_table(ci: tuple[float, float], margin: float, verdict: str, detail: str) -> None:
    v = forgetting_verdict(sum(ci) / 2, ci, margin)
    assert (v["verdict"], v["detail"]) == (verdict, detail)


def test_alignment_by_id_ignores_order_and_missing_items(tmp_path: Path) -> None:
    b, t = _scores(0, n=50)
    ids = [f"q{i}" for i in range(50)]
    base = write_run(tmp_path, "base", [FakeBench("mmlu", {"accuracy": b}, ids=ids)])
    # the tuned run lists items in reverse and lacks the first five
    rev = list(range(49, 4, -1))
    tuned = write_run(tmp_path, "tuned", [FakeBench("mmlu", {"accuracy": [t[i] for i in rev]}, ids=[ids[i] for i in rev])])
    c = compare_runs(load_run(base), load_run(tuned), CompareSettings(resamples=300))
    e = c["benchmarks"]["mmlu"]
    assert e["n_aligned"] == 45
    m = e["metrics"]["accuracy"]
    assert m["delta"]["value"] == pytest.approx(float(np.mean(t[5:] - b[5:])))
    lost = {ids[i] for i in range(5, 50) if b[i] == 1 and t[i] == 0}
    assert set(m["flips"]["lost_ids"]) == lost and m["flips"]["lost"] == len(lost)
    # missing items are listed, but they do not block the comparison
    (mm,) = [x for x in c["mismatches"] if x["field"] == "samples.ids"]
    assert mm["count"] == 5 and not mm["blocking"]


def _settings_variant(**gen: object) -> dict:
    s = FakeBench("x", {"a": [1]}).settings
    s = copy.deepcopy(s)
    s["gen"].update(gen)
    return s


@pytest.mark.parametrize(
    ("tuned_kwargs", "field"),
    [
        ({"settings": _settings_variant(max_new_tokens=32)}, "settings.gen.max_new_tokens"),
        ({"data_sha": "e" * 64}, "data.sha256"),
        ({"prompts": [f"<|im_start|>user\nQ{i}<|im_end|>" for i in range(40)]}, "samples.prompt_hash"),
    ],
)
def test_blocking_mismatch_refused_and_named(tmp_path: Path, tuned_kwargs: dict, field: str) -> None:
    b, t = _scores(1, n=40)
    base = write_run(tmp_path, "base", [FakeBench("gsm8k", {"em": b}, general=True)])
    tuned = write_run(tmp_path, "tuned", [FakeBench("gsm8k", {"em": t}, general=True, **tuned_kwargs)])
    with pytest.raises(SftevalError) as err:
        compare_runs(load_run(base), load_run(tuned), CompareSettings(resamples=200))
    assert field.split(".")[-1] in str(err.value) and "--allow-mismatch" in str(err.value)
    c = compare_runs(load_run(base), load_run(tuned), CompareSettings(resamples=200, allow_mismatch=True))
    assert any(m["field"] == field and m["blocking"] for m in c["mismatches"])


def test_chat_template_use_difference_is_blocking(tmp_path: Path) -> None:
    s = copy.deepcopy(FakeBench("x", {"a": [1]}).settings)
    s["chat_template"] = True
    base = write_run(tmp_path, "base", [FakeBench("mmlu", {"accuracy": [1, 0, 1]})])
    tuned = write_run(tmp_path, "tuned", [FakeBench("mmlu", {"accuracy": [1, 0, 1]}, settings=s)])
    with pytest.raises(SftevalError, match="settings.chat_template"):
        compare_runs(load_run(base), load_run(tuned))


def test_sampling_seed_difference_is_not_blocking(tmp_path: Path) -> None:
    base = write_run(tmp_path, "base", [FakeBench("mmlu", {"accuracy": [1, 0, 1]})])
    tuned = write_run(tmp_path, "tuned", [FakeBench("mmlu", {"accuracy": [1, 0, 1]}, settings=_settings_variant(seed=7))])
    c = compare_runs(load_run(base), load_run(tuned), CompareSettings(resamples=100))
    assert [m["field"] for m in c["mismatches"]] == ["settings.gen.seed"] and not c["mismatches"][0]["blocking"]


def test_holm_family_general_flags_and_json_safety(tmp_path: Path) -> None:
    b1, t1 = _scores(2, drop=0.2)
    b2, t2 = _scores(3)
    base = write_run(tmp_path, "base", [
        FakeBench("gsm8k", {"em": b1, "em_flex": b1}, kind="math", general=True),
        FakeBench("custom", {"score": b2}),
        FakeBench("only_base", {"score": b2}),
    ])
    tuned = write_run(tmp_path, "tuned", [
        FakeBench("gsm8k", {"em": t1, "em_flex": t1}, kind="math", general=True),
        FakeBench("custom", {"score": t2}),
    ])
    c = compare_runs(load_run(base), load_run(tuned), CompareSettings(resamples=500, general=("custom",)))
    assert c["schema"] == COMPARE_SCHEMA
    assert c["holm"]["family"] == ["gsm8k/em", "custom/score"]
    g = c["benchmarks"]["gsm8k"]["metrics"]
    assert g["em"]["p_holm"] >= g["em"]["p_value"] and g["em_flex"]["p_holm"] is None
    assert c["benchmarks"]["gsm8k"]["forgetting"]["verdict"] == "forgot"
    assert c["benchmarks"]["custom"]["general"] and c["benchmarks"]["custom"]["forgetting"] is not None
    assert c["forgetting"]["forgot"] == ["gsm8k"]
    assert c["only_in_base"] == ["only_base"]
    assert len(c["benchmarks"]["gsm8k"]["top_flips"]) <= 10
    json.dumps(c, allow_nan=False)  # no NaN leaks into the file


def test_nan_in_results_json_becomes_null(tmp_path: Path) -> None:
    base = write_run(tmp_path, "base", [FakeBench("heldout", {"rougeL": [0.2]}, kind="reference")])
    tuned = write_run(tmp_path, "tuned", [FakeBench("heldout", {"rougeL": [0.3]}, kind="reference")])
    c = compare_runs(load_run(base), load_run(tuned), CompareSettings(resamples=50))
    m = c["benchmarks"]["heldout"]["metrics"]["rougeL"]
    assert m["base_reported"]["stderr"] is None  # n = 1: the runner wrote NaN
    json.dumps(c, allow_nan=False)


def test_non_binary_metric_uses_paired_t_and_no_flips(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    b = rng.uniform(0, 1, 60)
    t = np.clip(b + rng.normal(0.05, 0.05, 60), 0, 1)
    base = write_run(tmp_path, "base", [FakeBench("heldout", {"rougeL": b}, kind="reference")])
    tuned = write_run(tmp_path, "tuned", [FakeBench("heldout", {"rougeL": t}, kind="reference")])
    m = compare_runs(load_run(base), load_run(tuned), CompareSettings(resamples=300))["benchmarks"]["heldout"]["metrics"]["rougeL"]
    assert m["test"] == "bounded-score" and m["flips"] is None and m["delta"]["ci95"][0] > 0


def test_load_run_errors_name_file_line_field(tmp_path: Path) -> None:
    run = write_run(tmp_path, "base", [FakeBench("mmlu", {"accuracy": [1, 0]})])
    with (run / "samples" / "mmlu.jsonl").open("a") as f:
        f.write('{"prompt": "no id"}\n{"id": "x"}\n')
    with pytest.raises(SftevalError) as err:
        load_run(run)
    assert err.value.line == 3 and err.value.field == "id"
    with pytest.raises(SftevalError, match="not a run folder"):
        load_run(tmp_path)
    (tmp_path / "c.json").write_text('{"schema": "other/1"}')
    with pytest.raises(SftevalError, match="sfteval.compare/1"):
        load_comparison(tmp_path / "c.json")


def test_cli_compare_writes_comparison_and_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    b, t = _scores(5)
    base = write_run(tmp_path, "base", [FakeBench("mmlu", {"accuracy": b}, general=True)])
    tuned = write_run(tmp_path, "tuned", [FakeBench("mmlu", {"accuracy": t}, general=True)])
    out = tmp_path / "cmp"
    assert run_cli(["compare", str(base), str(tuned), "--out", str(out), "--resamples", "300"], monkeypatch) == 0
    assert load_comparison(out)["settings"]["resamples"] == 300
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    # a blocking mismatch: exit 2, nothing written
    other = write_run(tmp_path / "o", "tuned", [FakeBench("mmlu", {"accuracy": t}, data_sha="f" * 64)])
    assert run_cli(["compare", str(base), str(other), "--out", str(tmp_path / "no")], monkeypatch) == 2
    assert not (tmp_path / "no").exists()


def test_cli_compare_runs_checkpoints_through_the_runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Checkpoint folders go through sfteval.runner.execute_run with one set of settings."""
    b, t = _scores(6, n=80)
    runs = {"base": b, "tuned": t}
    configs = []

    def execute_run(cfg: object) -> Path:
        configs.append(cfg)
        label = Path(cfg.checkpoint).name  # type: ignore[attr-defined]
        return write_run(cfg.out, label, [FakeBench("mmlu", {"accuracy": runs[label]}, general=True)])  # type: ignore[attr-defined]

    monkeypatch.setitem(sys.modules, "sfteval.runner", types.SimpleNamespace(execute_run=execute_run))
    for name in runs:
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
    code = run_cli(["compare", str(tmp_path / "base"), str(tmp_path / "tuned"), "--reports", str(tmp_path / "rep"),
                    "--benchmark", "mmlu", "--limit", "80", "--resamples", "200"], monkeypatch)
    assert code == 0 and len(configs) == 2
    strip = [{k: v for k, v in vars(c).items() if k != "checkpoint"} for c in configs]
    assert strip[0] == strip[1] and configs[0].benchmarks == ("mmlu",) and configs[0].limit == 80
    assert len(list((tmp_path / "rep" / "compare").glob("*/comparison.json"))) == 1


def test_prompting_difference_is_blocking(tmp_path: Path) -> None:
    import json as _json

    base = write_run(tmp_path, "base", [FakeBench("mmlu", {"accuracy": [1, 0, 1]})])
    tuned = write_run(tmp_path, "tuned", [FakeBench("mmlu", {"accuracy": [1, 0, 1]})])
    for run, used in ((base, False), (tuned, True)):
        doc = _json.loads((run / "results.json").read_text())
        doc["prompting"] = {"chat_template_used": used, "chat_template_sha256": None, "bos_text": "<s>"}
        (run / "results.json").write_text(_json.dumps(doc))
    with pytest.raises(SftevalError, match="prompting.chat_template_used"):
        compare_runs(load_run(base), load_run(tuned))


@pytest.mark.slow
def test_compare_real_runs_of_the_tiny_model(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Checkpoints through the real runner: a model against itself under greedy decoding."""
    out = tmp_path / "cmp"
    code = run_cli(["compare", str(tiny_model), str(tiny_model), "-b", "offline_mmlu", "-b", "offline_gsm8k",
                    "--limit", "4", "--backend", "hf", "--reports", str(tmp_path / "rep"), "--out", str(out),
                    "--resamples", "200"], monkeypatch)
    assert code == 0
    c = load_comparison(out)
    assert c["mismatches"] == [] and set(c["benchmarks"]) == {"offline_mmlu", "offline_gsm8k"}
    for e in c["benchmarks"].values():
        delta = e["metrics"][e["primary_metric"]]["delta"]
        # Identical outputs: a zero delta, but at n = 4 an honest paired interval is wide, never [0, 0] (#13).
        assert e["n_aligned"] == 4 and delta["value"] == 0.0 and delta["ci95"][0] < 0.0 < delta["ci95"][1]
    # So a 5-point non-inferiority margin cannot be shown on 4 items: inconclusive (3), or
    # uninformative (2) where the random tiny model scores the same constant in both runs.
    code = run_cli(["gate", str(out), "--rules", str(_rules(tmp_path)), "--out", str(tmp_path / "g")], monkeypatch)
    assert code in (2, 3)


def _rules(tmp: Path) -> Path:
    p = tmp / "gate.toml"
    p.write_text('[max_drop]\n"*" = 0.05\n')
    return p


def test_comparison_has_every_key_the_format_doc_promises(tmp_path: Path) -> None:
    """docs/compare-format.md is the dashboard's contract: the file must carry its keys."""
    b, t = _scores(7, n=40)
    base = write_run(tmp_path, "base", [FakeBench("gsm8k", {"exact_match_strict": b, "exact_match_flexible": b},
                                                  kind="math", general=True)])
    tuned = write_run(tmp_path, "tuned", [FakeBench("gsm8k", {"exact_match_strict": t, "exact_match_flexible": t},
                                                    kind="math", general=True)])
    c = compare_runs(load_run(base), load_run(tuned), CompareSettings(resamples=100))
    assert set(c) == {"schema", "created", "base", "tuned", "lineage", "settings", "mismatches", "only_in_base", "only_in_tuned",
                      "benchmarks", "holm", "forgetting", "overfitting", "drift", "contamination"}
    assert set(c["base"]) == {"run_id", "label", "path", "model_path", "fingerprint"}
    assert set(c["settings"]) == {"seed", "resamples", "alpha", "margin", "general", "allow_mismatch", "train_data",
                                  "sweep", "split", "split_benchmarks", "ngram"}
    e = c["benchmarks"]["gsm8k"]
    assert set(e) == {"kind", "general", "primary_metric", "n_base", "n_tuned", "n_aligned", "metrics", "forgetting",
                      "top_flips", "breakdown"}
    assert set(e["metrics"]["exact_match_strict"]) == {"binary", "base", "tuned", "base_reported", "tuned_reported",
                                                       "delta", "p_value", "test", "p_holm", "retention", "flips",
                                                       "p_exact", "inference", "uninformative"}
    assert set(e["forgetting"]) == {"verdict", "detail", "metric", "margin", "delta", "ci95"}
    assert set(c["overfitting"]) == {"train_heldout", "memorisation", "sweep"}
    assert set(c["drift"]["gsm8k"]) == {"extraction_failure_rate", "strict_flexible_gap", "output_tokens",
                                        "length_ratio", "truncation_rate", "repetition", "template_leak_rate",
                                        "template_tokens", "flags", "fdr"}
    assert set(c["drift"]["gsm8k"]["truncation_rate"]) <= {"base", "tuned", "delta", "delta_ci95", "p_value", "test",
                                                           "q_value"}
    if e["top_flips"]:
        assert set(e["top_flips"][0]) == {"direction", "id", "prompt", "reference", "base_output", "tuned_output",
                                          "base_answer", "tuned_answer"}


def test_no_common_benchmark_is_an_error(tmp_path: Path) -> None:
    base = write_run(tmp_path, "base", [FakeBench("mmlu", {"accuracy": [1, 0]})])
    tuned = write_run(tmp_path, "tuned", [FakeBench("gsm8k", {"em": [1, 0]})])
    with pytest.raises(SftevalError, match="no benchmark in common"):
        compare_runs(load_run(base), load_run(tuned))
