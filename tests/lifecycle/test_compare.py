"""Champion/challenger: two real runs on the same split, compared on the same images."""

from __future__ import annotations

import json
import shutil

import helpers
import numpy as np
import pytest
from helpers import make_shapes_dataset

import imgclf
from imgclf.core.errors import UserError
from imgclf.lifecycle.compare import compare, mcnemar, promotion_verdict, slice_stats

FAST = {**helpers.FAST, "test_frac": 0.3, "verbose": False}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    data = make_shapes_dataset(root / "shapes", per_class=30)
    weak = imgclf.train(data, out=root / "weak", epochs=1, lr=1e-4, **FAST)
    strong = imgclf.train(data, out=root / "strong", epochs=8, **FAST)
    return data, weak.path, strong.path


@pytest.mark.slow
def test_stronger_challenger_is_promoted(runs, tmp_path):
    data, weak, strong = runs
    r = compare(weak, strong, data=data, n_boot=300, out=tmp_path / "c.json")
    assert r["verdict"]["promote"], r["verdict"]
    assert "Promote" in r["verdict"]["paragraph"]
    assert json.loads((tmp_path / "c.json").read_text())["verdict"] == r["verdict"]
    test, new = r["slices"]["test split"], r["slices"]["new data"]
    assert test["n"] == 27 and new["n"] == 90
    for s in (test, new):
        for k in ("a", "b", "diff"):
            lo, hi = s["accuracy"][k]["ci"]
            assert lo <= s["accuracy"][k]["value"] <= hi
        mc, changed = s["mcnemar"], s["changed"]
        assert mc["b01"] == sum(c["change"] == "fixed" for c in changed)
        assert mc["b10"] == sum(c["change"] == "broken" for c in changed)
        assert s["accuracy"]["diff"]["value"] == pytest.approx((mc["b01"] - mc["b10"]) / s["n"])
        assert 0 <= s["ece"]["a"] <= 1 and 0 <= s["ece"]["b"] <= 1
    assert new["accuracy"]["b"]["value"] > new["accuracy"]["a"]["value"]


@pytest.mark.slow
def test_run_against_itself_is_no_difference(runs, tmp_path):
    _, _, strong = runs
    r = compare(strong, strong, n_boot=100)
    s = r["slices"]["test split"]
    assert s["changed"] == [] and s["mcnemar"]["p_value"] == 1.0
    assert s["accuracy"]["diff"]["ci"] == [0.0, 0.0]
    assert r["verdict"]["promote"] and "no difference" in r["verdict"]["paragraph"]
    assert (strong / f"compare-{strong.name}.json").is_file()


@pytest.mark.slow
def test_new_data_of_one_class_named_in_capitals(runs, tmp_path):
    """New photos of one class, its folder named DISC: matched to 'disc', compared on its 30 photos."""
    data, weak, strong = runs
    shutil.copytree(data / "disc", tmp_path / "new" / "DISC")
    new = compare(weak, strong, data=tmp_path / "new", n_boot=50)["slices"]["new data"]
    assert new["n"] == 30 and new["per_class"]["disc"]["n"] == 30
    # On the command line the new data is DATA, as `imgclf evaluate RUN DATA` takes it, or --data.
    # A folder of a class neither knows is left out and said, as evaluate does, not a refusal.
    shutil.copytree(data / "square", tmp_path / "new" / "kite")
    p = helpers.cli("compare", weak, strong, tmp_path / "new", "--out", tmp_path / "c.json")
    assert "left out 30 images of classes neither model knows: kite (30)" in " ".join(p.stdout.split())
    new = json.loads((tmp_path / "c.json").read_text())["slices"]["new data"]
    assert new["n"] == 30 and new["left_out"] == {"kite": 30}
    p = helpers.cli("compare", weak, strong, tmp_path / "new", "--data", data, check=False)
    assert p.returncode == 2 and p.stderr == (
        f"error: two folders of new data ({tmp_path / 'new'} and --data {data}): give one, as DATA or as --data\n"
    )


def test_class_drop_beyond_tolerance_blocks_promotion():
    y = np.repeat([0, 1, 2], 20)
    a, b = y.copy(), y.copy()
    a[:4] = 1  # A: cat recall 0.80, 56/60 right
    b[20:23] = 0  # B: dog recall 0.85, 57/60 right
    s = slice_stats(y, a, b, ["cat", "dog", "fox"], n_boot=200)
    assert s["accuracy"]["diff"]["value"] > 0 and s["per_class"]["dog"]["diff"] == pytest.approx(-0.15)
    v = promotion_verdict({"test split": s}, {"tolerance": 0.02})
    assert not v["promote"] and "Keep" in v["paragraph"]
    assert v["reasons"] == [
        "test split: recall of 'dog' drops from 100.0% to 85.0% (20 -> 17 of 20 images; more than the 2.0% tolerance)"
    ]
    assert promotion_verdict({"test split": s}, {"tolerance": 0.2})["promote"]
    # One image is the finest step a class of 20 test images shows (5 points): allowed, and said.
    b = y.copy()
    b[20] = 0  # B: dog recall 0.95 (19 of 20), and the cats A missed named right
    one = promotion_verdict({"test split": slice_stats(y, a, b, ["cat", "dog", "fox"], n_boot=200)})
    assert one["promote"] and "recall of 'dog' 100.0% -> 95.0% (20 -> 19 of 20 images: one image)" in one["paragraph"]
    assert not promotion_verdict({"test split": slice_stats(y, a, b, ["cat", "dog", "fox"])}, {"tolerance": 0})[
        "promote"
    ]


def test_better_but_not_significant_says_so():
    y = np.zeros(100, int)
    a, b = np.zeros(100, int), np.zeros(100, int)
    a[:12] = 1  # A wrong on 12 that B gets right
    b[12:16] = 1  # B wrong on 4 that A gets right
    mc = mcnemar(a == y, b == y)
    assert (mc["b01"], mc["b10"]) == (12, 4) and mc["p_value"] == pytest.approx(2 * 2517 / 2**16)
    v = promotion_verdict({"test split": slice_stats(y, a, b, ["x", "y"], n_boot=200)})
    assert v["promote"] and "not significant" in v["paragraph"]
    worse = promotion_verdict({"test split": slice_stats(y, b, a, ["x", "y"], n_boot=200)})
    assert not worse["promote"] and "accuracy falls" in worse["reasons"][0]
    lenient = {"min_diff": -0.1, "tolerance": 0.1}  # a small, non-significant loss may be allowed ...
    assert promotion_verdict({"test split": slice_stats(y, b, a, ["x", "y"], n_boot=200)}, lenient)["promote"]
    y, a, b = np.zeros(200, int), np.zeros(200, int), np.zeros(200, int)
    a[:4], b[4:24] = 1, 1  # ... a significant one (4 vs 20) never
    v = promotion_verdict({"test split": slice_stats(y, a, b, ["x", "y"], n_boot=200)}, lenient)
    assert not v["promote"] and "significant" in v["reasons"][0]


@pytest.mark.slow
def test_missing_classes_are_named(runs, tmp_path):
    data, weak, _ = runs
    small = tmp_path / "two"
    shutil.copytree(data, small)
    shutil.rmtree(small / "stripes")
    two = imgclf.train(small, out=tmp_path / "two-run", epochs=1, **FAST)
    with pytest.raises(UserError, match="stripes"):
        compare(weak, two.path, n_boot=50)
