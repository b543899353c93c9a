"""Run metadata as typed records (store.run_meta): the file layout is unchanged, nothing in a file is
lost on a load and save, and a damaged file is one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from imgclf.core.errors import UserError
from imgclf.store.run_meta import (
    Calibration,
    Decision,
    DetectorMeta,
    RunMeta,
    load_detector_meta,
    load_run_meta,
    save_run_meta,
)

FIXTURE = Path(__file__).parent / "fixtures" / "run-2026-11-26" / "run"


def test_an_old_model_json_reads_typed_and_writes_back_the_same_bytes(tmp_path):
    run = Path(shutil.copytree(FIXTURE, tmp_path / "run"))
    before = (run / "model.json").read_bytes()
    meta = load_run_meta(run)
    assert meta.classes == ["disc", "square", "stripes"] and meta.input.size == 24 and meta.input.resize == "squash"
    assert meta.architecture.name == "simple_cnn" and meta.normalization.std[0] == pytest.approx(0.2616)
    assert meta.temperature == pytest.approx(0.2000122) and not meta.is_ensemble and meta.decision is None
    assert meta.training.epochs_run == 8 and meta.training.plan is None and meta.data_root == "/tmp/fx/shapes"
    save_run_meta(run, meta)  # the same weights: the same hash
    assert (run / "model.json").read_bytes() == before


def test_fields_this_version_does_not_know_are_kept(tmp_path):
    raw = json.loads((FIXTURE / "model.json").read_text())
    raw["from_the_future"] = {"x": 1}
    raw["input"]["zoom"] = 2
    meta = RunMeta.from_dict(raw)
    assert meta.extra == {"from_the_future": {"x": 1}} and meta.input.extra == {"zoom": 2}
    assert meta.to_dict() == raw


def test_records_set_in_code_write_what_the_readers_expect():
    meta = RunMeta.from_dict(json.loads((FIXTURE / "model.json").read_text()))
    meta.calibration = Calibration(temperature=1.5, fitted_on="val", n=10)
    meta.decision = Decision(positive_class="square", threshold=0.7, rule="best_f1")
    d = meta.to_dict()
    assert d["calibration"] == {"method": "temperature", "temperature": 1.5, "fitted_on": "val", "n": 10}
    assert d["decision"] == {"positive_class": "square", "threshold": 0.7, "rule": "best_f1"}  # None left out
    assert "rejection" not in d and meta.temperature == 1.5


def test_a_damaged_model_json_is_one_line_naming_the_field(tmp_path):
    run = Path(shutil.copytree(FIXTURE, tmp_path / "run"))
    raw = json.loads((run / "model.json").read_text())
    raw["input"]["size"] = "big"
    (run / "model.json").write_text(json.dumps(raw))
    with pytest.raises(UserError, match="field input.size must be"):
        load_run_meta(run)
    raw["input"]["size"] = 24
    raw["decision"] = {"positive_class": "square"}  # no threshold: only a full load checks the decision
    (run / "model.json").write_text(json.dumps(raw))
    with pytest.raises(UserError, match="model.json is damaged"):
        load_run_meta(run, loadable=False)  # what the registry reads: one line too, not a TypeError
    (run / "model.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_run_meta(run)


def test_a_detector_runs_record(tmp_path):
    meta = DetectorMeta(classes=["person"], positive="person", threshold=0.4, data="/d", annotations="yolo")
    (tmp_path / "detector.json").write_text(json.dumps(meta.to_dict()))
    back = load_detector_meta(tmp_path)
    assert back == meta and back.kind == "detector"
    (tmp_path / "detector.json").write_text('{"classes": ["person"]}')  # no threshold, no positive class
    with pytest.raises(UserError, match="detector.json is damaged"):
        load_detector_meta(tmp_path)
