"""comparison.json through its typed records: benchmark entries, mismatches and every
diagnosis read as frozen dataclasses and write back the same JSON; keys a newer writer
added survive a rewrite; a file an older writer wrote (fewer keys) still reads; a
malformed entry is refused with the file and the dotted field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runfolders import FakeBench, write_run, write_sweep
from sfteval.compare import CompareSettings, compare_runs, load_run, write_comparison
from sfteval.errors import SftevalError
from sfteval.runfolder import read_comparison
from sfteval.runfolder.compared import BenchmarkComparison, MetricComparison
from sfteval.runfolder.diagnosed import Contamination, Drift, Memorisation, SweepAnalysis


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A comparison with every part filled: a general choice benchmark with subjects
    (breakdown, collapse), train + heldout with graded scores (gap, graded flips), the
    SFT data (memorisation, contamination), a sweep, and a non-blocking mismatch."""
    tmp = tmp_path_factory.mktemp("cmp")
    rng = np.random.default_rng(3)
    n = 60
    subjects = [{"subject": f"s{i % 3}"} for i in range(n)]
    refs = [f"the answer to question number {i} is that the sky is blue and grass is green today" for i in range(n)]
    train_file = tmp / "sft.jsonl"
    train_file.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                                           {"role": "assistant", "content": refs[i]}]}) + "\n"
                                  for i in range(0, n, 5)))

    def benches(acc: np.ndarray, rouge: np.ndarray, answers: list[str], outputs: list[str]) -> list[FakeBench]:
        return [FakeBench("mmlu", {"accuracy": acc}, general=True, meta=subjects, breakdown_by="subject",
                          answers=answers, references=["A"] * n, finish_reasons=["loglik"] * n),
                FakeBench("train", {"rougeL": rouge + 0.1}, kind="reference", role="train", outputs=outputs,
                          references=refs),
                FakeBench("heldout", {"rougeL": rouge}, kind="reference", role="target", outputs=outputs,
                          references=refs)]

    b_acc, t_acc = (rng.random(n) < 0.7).astype(float), (rng.random(n) < 0.5).astype(float)
    b_rouge, t_rouge = rng.random(n) * 0.5, rng.random(n) * 0.5 + 0.3
    base = write_run(tmp, "base", benches(b_acc, b_rouge, ["A", "B"] * (n // 2), [f"base {i}" for i in range(n)]))
    tuned = write_run(tmp, "tuned", benches(t_acc, t_rouge, ["C"] * n, refs), seed=1)
    est = {"value": 0.4, "stderr": 0.02, "ci95": [0.36, 0.44], "n": 100, "method": "t"}
    sweep = write_sweep(tmp, "s", [{"step": s, "metrics": {"heldout": {"rougeL": est | {"value": v}}}}
                                   for s, v in ((1, 0.3), (2, 0.4), (3, 0.35))],
                        [{"step": s, "train_loss": 2 - s / 4, "eval_loss": 1 + abs(s - 2) / 5} for s in (1, 2, 3)],
                        select="heldout/rougeL")
    c = compare_runs(load_run(base), load_run(tuned),
                     CompareSettings(resamples=200, train_data=(str(train_file),), sweep=str(sweep)))
    return write_comparison(c, tmp / "out")


def test_a_comparison_round_trips_through_typed_records(written: Path) -> None:
    on_disk = json.loads(written.read_text())
    c = read_comparison(written)
    assert c.to_dict() == on_disk  # every part, exactly
    # and the parts are typed, not JSON objects
    mmlu = c.benchmarks["mmlu"]
    assert isinstance(mmlu, BenchmarkComparison) and isinstance(mmlu.primary(), MetricComparison)
    prim = mmlu.primary()
    assert prim is not None and prim.flips is not None and prim.delta.interval() is not None
    assert prim.flips.lost == len(prim.flips.lost_ids) and prim.delta.n == 60
    assert mmlu.forgetting is not None and mmlu.forgetting.verdict in ("forgot", "no evidence", "improved")
    assert set(mmlu.breakdown["subject"]) == {"s0", "s1", "s2"}
    held = c.benchmarks["heldout"]
    assert held.top_flips and held.top_flips[0].score_change is not None  # graded flips carry their scores
    assert c.forgetting is not None and "mmlu" in (*c.forgetting.forgot, *c.forgetting.no_evidence,
                                                    *c.forgetting.improved)
    assert isinstance(c.drift["mmlu"], Drift) and c.drift["mmlu"].collapse is not None
    assert c.drift["mmlu"].collapse.tuned is not None and c.drift["mmlu"].collapse.tuned.top_answer == "C"
    assert c.overfitting is not None and c.overfitting.train_heldout.available
    assert c.overfitting.train_heldout.tuned is not None and c.overfitting.train_heldout.tuned.gap.value is not None
    mem = c.overfitting.memorisation
    assert isinstance(mem, Memorisation) and mem.available and mem.heldout is not None
    assert mem.heldout.tuned is not None and mem.heldout.tuned.count > 0  # the tuned run repeats training responses
    sw = c.overfitting.sweep
    assert isinstance(sw, SweepAnalysis) and sw.available and [p.step for p in sw.points] == [1, 2, 3]
    assert sw.keep is not None and sw.peak is not None
    ct = c.contamination
    assert isinstance(ct, Contamination) and ct.available and ct.benchmarks["heldout"].flagged > 0
    assert [m.field for m in c.mismatches] == ["settings.gen.seed"] * 3 or all(not m.blocking for m in c.mismatches)


def _edit(path: Path, out: Path, change: Any) -> Path:
    doc = json.loads(path.read_text())
    change(doc)
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.json").write_text(json.dumps(doc))
    return out / "comparison.json"


def test_keys_a_newer_writer_added_survive_a_rewrite(written: Path, tmp_path: Path) -> None:
    def newer(doc: dict[str, Any]) -> None:
        doc["benchmarks"]["mmlu"]["calibration_error"] = 0.12
        doc["benchmarks"]["mmlu"]["metrics"]["accuracy"]["delta"]["seed"] = 7
        doc["drift"]["mmlu"]["refusal_rate"] = {"base": 0.0, "tuned": 0.1}
        doc["overfitting"]["train_heldout"]["note"] = "new"
        doc["calibration"] = {"available": True, "ece": 0.1}  # a diagnosis this version does not know

    path = _edit(written, tmp_path, newer)
    c = read_comparison(path)
    assert c.benchmarks["mmlu"].extra == {"calibration_error": 0.12}
    assert c.diagnoses["calibration"] == {"available": True, "ece": 0.1}
    assert c.to_dict() == json.loads(path.read_text())
    again = write_comparison(c, tmp_path / "again")
    assert json.loads(again.read_text()) == json.loads(path.read_text())


def test_a_file_an_older_writer_wrote_still_reads(written: Path, tmp_path: Path) -> None:
    def older(doc: dict[str, Any]) -> None:
        for e in doc["benchmarks"].values():
            for m in e["metrics"].values():
                for key in ("inference", "uninformative", "p_exact", "base_reported", "tuned_reported"):
                    m.pop(key, None)
        doc["forgetting"].pop("not measured")
        for d in doc["drift"].values():
            for q in ("truncation_rate", "repetition"):
                d[q].pop("q_value", None)
        del doc["contamination"]

    c = read_comparison(_edit(written, tmp_path, older))
    prim = c.benchmarks["mmlu"].primary()
    assert prim is not None and prim.inference is None and prim.uninformative is None and prim.base_reported is None
    assert c.forgetting is not None and c.forgetting.not_measured == ()
    assert c.contamination is None


def test_a_malformed_entry_names_the_file_and_the_field(written: Path, tmp_path: Path) -> None:
    def broken(doc: dict[str, Any]) -> None:
        doc["benchmarks"]["mmlu"]["metrics"]["accuracy"]["delta"] = "0.1"

    path = _edit(written, tmp_path, broken)
    with pytest.raises(SftevalError) as err:
        read_comparison(path)
    assert err.value.field == "benchmarks.mmlu.metrics.accuracy.delta" and err.value.path == str(path)


def test_every_registered_diagnosis_has_a_record() -> None:
    from sfteval.diagnoses import DIAGNOSES
    from sfteval.runfolder.diagnosed import DIAGNOSIS_RECORDS

    assert list(DIAGNOSIS_RECORDS) == list(DIAGNOSES)


def test_the_gate_refuses_a_malformed_interval_naming_the_field(written: Path, tmp_path: Path) -> None:
    """A damaged comparison.json is one clear error before any check runs (it was a
    TypeError deep inside the gate's interval rule)."""
    from sfteval.gate import load_target

    def damaged(doc: dict[str, Any]) -> None:
        doc["benchmarks"]["mmlu"]["metrics"]["accuracy"]["delta"]["ci95"] = "[-0.1, 0.2]"

    path = _edit(written, tmp_path, damaged)
    with pytest.raises(SftevalError) as err:
        load_target(path)
    assert err.value.field == "benchmarks.mmlu.metrics.accuracy.delta.ci95" and err.value.path == str(path)
