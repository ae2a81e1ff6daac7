"""Kind `instruction` (IFEval) end to end: `sfteval run --replay` on IFEval-schema items,
metrics with clustered intervals, the per-type breakdown, bad input before any model,
and compare/gate reading the result."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sfteval.kinds.instruction import cluster_ratio

pytest.importorskip("langdetect")

ITEMS = [
    {"key": 1, "prompt": "Write a haiku. Do not use any commas.", "instruction_id_list": ["punctuation:no_comma"],
     "kwargs": [{}]},
    {"key": 2, "prompt": "Answer in JSON and in all lowercase.",
     "instruction_id_list": ["detectable_format:json_format", "change_case:english_lowercase"], "kwargs": [{}, {}]},
    {"key": 3, "prompt": "Write at least 5 words, with a title like <<title>>.",
     "instruction_id_list": ["length_constraints:number_words", "detectable_format:title"],
     # the hub's schema: every row has every key, unused ones null
     "kwargs": [{"relation": "at least", "num_words": 5, "num_highlights": None}, {"num_words": None}]},
    {"key": 4, "prompt": "End your answer with 'Any other questions?'",
     "instruction_id_list": ["startend:end_checker"], "kwargs": [{"end_phrase": "Any other questions?"}]},
]
OUTPUTS = {
    "1": "Autumn moonlight\na worm digs silently\ninto the chestnut",  # followed
    "2": 'Sure!\n{"answer": "the sky is blue and the grass is green in the summer"}',  # json: strict no, loose yes; lowercase: no
    "3": "<<Title>>\nfour words only here",  # words: 5 counting the title? "Title four words only here" = 5
    "4": "Here is my answer. Any other questions?",
}


def _sfteval(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sfteval.cli", *args], capture_output=True, text=True)


def _cli(*args: str) -> subprocess.CompletedProcess:
    """In process (no interpreter start-up): same exit codes for the paths used here."""
    from typer.testing import CliRunner

    from sfteval.cli import app

    r = CliRunner().invoke(app, list(args))
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return subprocess.CompletedProcess(args, r.exit_code, r.output, "")


def _write(tmp_path: Path, items: list[dict], outputs: dict[str, str]) -> tuple[Path, Path]:
    data = tmp_path / "ifeval.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in items))
    outs = tmp_path / "outs.jsonl"
    outs.write_text("".join(json.dumps({"id": k, "output": v}) + "\n" for k, v in outputs.items()))
    return data, outs


def _run(tmp_path: Path, data: Path, outs: Path, name: str) -> Path:
    r = _cli("run", "--replay", str(outs), "--name", name, "-b", "ifeval", "--data", f"ifeval={data}",
             "--out", str(tmp_path))
    assert r.returncode == 0, r.stdout
    (run,) = (tmp_path / "runs").glob(f"{name}-*")
    return run


def test_replay_end_to_end(tmp_path: Path) -> None:
    data, outs = _write(tmp_path, ITEMS, OUTPUTS)
    run = _run(tmp_path, data, outs, "tuned")
    res = json.loads((run / "results.json").read_text())["benchmarks"]["ifeval"]
    m = res["metrics"]
    assert res["kind"] == "instruction" and res["primary_metric"] == "prompt_strict"
    # strict: 1 yes; 2 json no (preamble), lowercase no ("Sure!"); 3 yes+yes; 4 yes
    assert m["prompt_strict"]["value"] == pytest.approx(3 / 4)
    assert m["instruction_strict"]["value"] == pytest.approx(4 / 6)
    # loose: 2's json passes without its first line; lowercase passes without "Sure!" too
    assert m["prompt_loose"]["value"] == pytest.approx(1.0)
    assert m["instruction_loose"]["value"] == pytest.approx(1.0)
    assert m["instruction_strict"]["method"].startswith("cluster-ratio")
    lo, hi = m["instruction_strict"]["ci95"]
    assert 0 <= lo < 4 / 6 < hi <= 1
    assert m["instruction_loose"]["ci95"][0] < 1.0  # all followed: still an interval, not [1, 1]
    per_type = res["breakdown"]["instruction"]
    assert set(per_type) == {i for r in ITEMS for i in r["instruction_id_list"]}
    assert per_type["detectable_format:json_format"]["instruction_strict"]["value"] == 0.0
    assert per_type["detectable_format:json_format"]["instruction_loose"]["value"] == 1.0
    assert res["breakdown"]["category"]["detectable_format"]["instruction_strict"]["n"] == 2
    samples = [json.loads(x) for x in (run / "samples" / "ifeval.jsonl").read_text().splitlines()]
    by_id = {s["id"]: s for s in samples}
    assert by_id["2"]["meta"]["strict"] == [False, False] and by_id["2"]["meta"]["loose"] == [True, True]
    # per-sample instruction scores average to the instruction-level accuracy
    assert np.mean([s["scores"]["instruction_strict"] for s in samples]) == pytest.approx(4 / 6)
    assert res["settings"]["sentences"] == "builtin"


def test_compare_and_gate_on_ifeval_metrics(tmp_path: Path) -> None:
    # the same four items six times over, so that the intervals can decide
    items = [{**r, "key": 100 * k + r["key"]} for k in range(6) for r in ITEMS]
    outputs = {str(100 * k + int(i)): o for k in range(6) for i, o in OUTPUTS.items()}
    data, outs = _write(tmp_path, items, outputs)
    tuned = _run(tmp_path, data, outs, "tuned")
    base_outs = tmp_path / "base_outs.jsonl"
    base_outs.write_text("".join(json.dumps({"id": k, "output": "Hello, world"}) + "\n" for k in outputs))
    base = _run(tmp_path, data, base_outs, "base")
    cmp_dir = tmp_path / "cmp"
    r = _cli("compare", str(base), str(tuned), "--out", str(cmp_dir))
    assert r.returncode == 0, r.stderr
    comp = json.loads(next(cmp_dir.rglob("comparison.json")).read_text())
    inst = comp["benchmarks"]["ifeval"]["metrics"]["instruction_strict"]
    b = json.loads((base / "results.json").read_text())["benchmarks"]["ifeval"]["metrics"]["instruction_strict"]["value"]
    assert inst["delta"]["value"] == pytest.approx(4 / 6 - b)  # the delta of the instruction-level metric
    rules = tmp_path / "gate.toml"
    rules.write_text('[max_drop]\n"ifeval/instruction_strict" = 0.05\n"ifeval/prompt_strict" = 0.05\n')
    cmp_file = next(cmp_dir.rglob("comparison.json"))
    g = _cli("gate", str(cmp_file), "--rules", str(rules), "--out", str(tmp_path / "gate"))
    assert g.returncode == 0, g.stdout  # tuned follows more instructions: no drop
    back = tmp_path / "back"
    r = _cli("compare", str(tuned), str(base), "--out", str(back))  # the other way round: a large drop
    assert r.returncode == 0, r.stderr
    g = _cli("gate", str(next(back.rglob("comparison.json"))), "--rules", str(rules), "--out", str(tmp_path / "g2"))
    assert g.returncode == 1 and "ifeval/instruction_strict" in g.stdout, g.stdout


def test_bad_items_fail_before_any_model(tmp_path: Path) -> None:
    bad = [dict(ITEMS[0]), {"key": 9, "prompt": "x", "instruction_id_list": ["keywords:frequency"],
                            "kwargs": [{"keyword": "a", "frequency": 2, "relation": "more than"}]}]
    data, outs = _write(tmp_path, bad, {"1": "a", "9": "a"})
    r = _sfteval("run", "--replay", str(outs), "--name", "x", "-b", "ifeval", "--data", f"ifeval={data}",
                 "--out", str(tmp_path))
    assert r.returncode == 2
    assert f"{data}:2" in r.stderr and "kwargs[0]" in r.stderr and "relation" in r.stderr
    bad[1]["instruction_id_list"] = ["keywords:unknown"]
    data, outs = _write(tmp_path, bad, {"1": "a", "9": "a"})
    r = _sfteval("run", "--replay", str(outs), "--name", "x", "-b", "ifeval", "--data", f"ifeval={data}",
                 "--out", str(tmp_path))
    assert r.returncode == 2 and "instruction_id_list[0]" in r.stderr and "unknown instruction" in r.stderr


def test_cluster_ratio_matches_a_cluster_bootstrap() -> None:
    rng = np.random.default_rng(0)
    m = rng.integers(1, 4, size=400)
    # correlated within a prompt: one prompt-level ability drives all its instructions
    ability = rng.uniform(0.2, 0.95, size=400)
    y = rng.binomial(m, ability)
    est = cluster_ratio(y.tolist(), m.tolist())
    reps = []
    for _ in range(2000):
        idx = rng.integers(0, 400, size=400)
        reps.append(y[idx].sum() / m[idx].sum())
    assert est.stderr == pytest.approx(float(np.std(reps)), rel=0.1)
    naive = np.sqrt(est.value * (1 - est.value) / m.sum())
    assert est.stderr > naive * 1.05  # clustering widens the interval over the independent-trials one


@pytest.mark.skipif(not (Path(__file__).resolve().parents[2] / "shared" / "data" / "ifeval" / "input_data.jsonl").is_file(),
                    reason="the real IFEval prompts are not here (../shared/data/ifeval)")
def test_real_ifeval_prompts_build_and_score(tmp_path: Path) -> None:
    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "ifeval" / "input_data.jsonl"
    rows = [json.loads(x) for x in data.read_text().splitlines() if x.strip()]
    outs = tmp_path / "outs.jsonl"
    outs.write_text("".join(json.dumps({"id": str(r["key"]), "output": r["prompt"]}) + "\n" for r in rows[:20]))
    r = _cli("run", "--replay", str(outs), "--name", "real", "-b", "ifeval", "--data", f"ifeval={data}",
                 "--limit", "20", "--out", str(tmp_path))
    assert r.returncode == 0, r.stdout
    res = json.loads(next((tmp_path / "runs").glob("real-*/results.json")).read_text())["benchmarks"]["ifeval"]
    assert res["n"] == 20 and 0 <= res["metrics"]["prompt_strict"]["value"] <= res["metrics"]["prompt_loose"]["value"]


def test_missing_langdetect_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sfteval.benchmarks import load_spec
    from sfteval.errors import SftevalError
    from sfteval.kinds import BuildContext
    from sfteval.kinds.instruction import InstructionKind
    from sfteval.metrics import ifeval_text
    from sfteval.prompts import make_renderer

    data, _ = _write(tmp_path, ITEMS, OUTPUTS)
    monkeypatch.setattr(ifeval_text, "language_available", lambda: False)
    with pytest.raises(SftevalError, match="langdetect"):
        InstructionKind().build(load_spec("ifeval"), BuildContext(make_renderer(None, "auto"), str(data)))
    # items without a language or case instruction need no langdetect
    built = InstructionKind().build(load_spec("ifeval"), BuildContext(make_renderer(None, "auto"), str(data), limit=1))
    assert len(built.samples) == 1
