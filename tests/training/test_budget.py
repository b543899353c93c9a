"""A time budget and the learning curve decide how long the default trains (training.budget)."""

from __future__ import annotations

import json
import re

import pytest
from helpers import cli, make_shapes_dataset

import imgclf
from imgclf.core.errors import UserError
from imgclf.settings.config import TrainConfig
from imgclf.store.checkpoint import read_training_info
from imgclf.training.budget import Plan, default_budget, describe_seconds
from imgclf.training.loop import STATE_FILE


@pytest.mark.parametrize(
    "text, seconds",
    [
        *[("90s", 90), ("5m", 300), ("1h30m", 5400), ("2.5m", 150), ("300", 300), (45, 45), ("off", 0), ("auto", None)],
        *[("5 minutes", 300), ("2 min", 120), ("10 sec", 10), ("1 hour 30 minutes", 5400), ("1.5 hrs", 5400)],
    ],
)
def test_durations_are_read_as_people_write_them(text, seconds):
    assert TrainConfig(time_budget=text).time_budget == seconds


@pytest.mark.parametrize("bad", ["5 lightyears", "-3m", "m", "1d", True, "10h10h", "PT2M", "1:30", "5ms"])
def test_a_bad_duration_is_refused_in_one_line(bad):
    with pytest.raises(UserError, match="time_budget must be"):
        TrainConfig(time_budget=bad)


def test_the_default_budget_grows_with_the_images_and_shrinks_with_the_machine():
    small, why = default_budget(1_000, gpu=False, cores=2)
    big, _ = default_budget(10_000, gpu=False, cores=2)
    more_cores, _ = default_budget(10_000, gpu=False, cores=8)
    gpu, _ = default_budget(10_000, gpu=True, cores=8)
    assert 90 <= small < big and gpu < more_cores < big
    # Cores speed training up by the measured 1.7x a doubling, not linearly: 8 cores ~2.9x, not 4x.
    assert more_cores == pytest.approx(big / 2.9, rel=0.02)
    assert default_budget(10_000, gpu=False, cores=64)[0] == more_cores  # beyond 8, bandwidth-bound
    assert "1,000 training images on 2 CPU cores" in why and describe_seconds(small) in why
    assert default_budget(10**7, gpu=False, cores=1)[0] == 3600  # capped
    apple, why = default_budget(10_000, gpu=True, cores=8, mps=True)  # no faster than the CPU recipe
    assert apple == default_budget(10_000, gpu=False, cores=2)[0] and "Apple's GPU (MPS)" in why


def test_the_budget_counts_the_cores_torch_trains_on_not_hyperthreads(monkeypatch):
    # A 4-core laptop with two threads a core: 8 CPUs to the OS, torch's 4 threads do the work.
    import torch

    from imgclf.training import budget

    monkeypatch.setattr("imgclf.core.cpus.usable_cpus", lambda: 8)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    assert budget.compute_cores() == 4
    monkeypatch.setattr(torch, "get_num_threads", lambda: 16)  # more threads than CPUs allowed: the CPUs count
    assert budget.compute_cores() == 8


def test_where_a_plateau_can_end_the_run_the_floor_is_lower_on_a_cpu():
    assert default_budget(900, gpu=False, cores=2)[0] == 90  # the budget alone ends the run: 90 s
    seconds, why = default_budget(900, gpu=False, cores=2, plateau=True)
    assert seconds == pytest.approx(54) and "(within 45s-1h00m)" in why  # 60 ms an image, under the old floor
    assert default_budget(300, gpu=False, cores=2, plateau=True)[0] == 45
    assert default_budget(300, gpu=True, cores=2, plateau=True)[0] == 90  # a GPU's floor is unmeasured: kept


@pytest.mark.parametrize("n_val, seconds", [(30, 90), (99, 90), (100, 54), (0, 90)])
def test_the_default_budget_floor_follows_whether_validation_can_end_the_run(n_val, seconds, monkeypatch):
    import torch

    from imgclf.training.defaults import resolve

    monkeypatch.setattr("imgclf.training.budget.compute_cores", lambda: 2)  # the 2-core machine
    cfg = TrainConfig(model="simple_cnn", img_size=16)
    chosen, notes = resolve(cfg, ["a.png"] * 900, torch.device("cpu"), n_val)
    assert chosen.time_budget == pytest.approx(seconds)
    assert any(line.startswith(f"time_budget={describe_seconds(seconds)}: 60 ms") for line in notes), notes
    told = resolve(TrainConfig(model="simple_cnn", img_size=16, keep="last"), ["a.png"] * 900, torch.device("cpu"), 100)
    assert told[0].time_budget == 90  # --keep last trains to the budget's end: no plateau to end it sooner


# The Keras tutorial CNN's wall seconds on issue 34's three held-out sets (training images: seconds).
KERAS_TUTORIAL_S = {1_924: 131.0, 2_400: 150.0, 8_192: 544.0}


def test_the_default_budget_ends_before_the_keras_tutorial_cnn_would_on_the_same_machine():
    for n_train, keras_s in KERAS_TUTORIAL_S.items():
        seconds, _ = default_budget(n_train, gpu=False, cores=2)
        assert seconds * 1.03 <= keras_s, (n_train, seconds)  # with the 3 % a budget has overrun by


def _run(plan: Plan, epochs: int, scores, step_s: float = 1.0, val_s: float = 0.0, start: float = 0.0):
    """Drive `plan` as the loop does, on a fake clock; returns (epochs run, factors of every step)."""
    now, factors = start, []
    for epoch in range(epochs):
        plan.epoch_starts()
        for step in range(plan.spe):
            factors.append(plan.factor(epoch, step))
            now += step_s
            if plan.step_done(epoch, step, now):
                break
        now += val_s
        if plan.epoch_done(epoch, scores(epoch), 1.0, val_s, now, now):
            return epoch + 1, factors
    return epochs, factors


def test_a_plateau_starts_a_cooldown_that_ends_the_run_at_a_learning_rate_of_zero():
    plan = Plan(steps_per_epoch=10, first_epoch=0, max_epochs=100, deadline=None, patience=3)
    ran, factors = _run(plan, 100, lambda e: min(e, 4) / 10)  # improves for 5 epochs, then flat
    assert plan.s.reason == "plateau" and ran < 12
    assert factors[0] < 0.1 and max(factors) == 1.0  # warm-up to the peak
    cool = factors[plan.s.cool_start :]
    assert cool == sorted(cool, reverse=True) and cool[-1] < 0.1  # straight down, to ~0


def test_the_clock_starts_the_cooldown_so_that_the_run_ends_within_its_budget():
    plan = Plan(steps_per_epoch=10, first_epoch=0, max_epochs=100, deadline=100.0, patience=3, val_steps=0)
    ran, factors = _run(plan, 100, lambda e: e, step_s=1.0, val_s=2.0)  # always improving
    assert plan.s.reason == "time"
    steps, vals = len(factors), ran
    assert 80 <= steps + 2 * vals <= 100  # used most of the budget, not more
    assert factors[-1] < 0.2 and plan.s.cool_end - plan.s.cool_start >= 0.15 * steps  # a real cooldown


def test_the_epoch_cap_leaves_room_for_the_cooldown():
    plan = Plan(steps_per_epoch=10, first_epoch=0, max_epochs=10, deadline=None, patience=99)
    ran, factors = _run(plan, 10, lambda e: e)
    assert ran == 10 and plan.s.reason == "epochs" and len(factors) == 100
    assert factors[-1] < 0.1 and plan.s.cool_end == 100


def test_a_plan_resumes_where_it_was():
    plan = Plan(steps_per_epoch=10, first_epoch=0, max_epochs=100, deadline=None, patience=2)
    _run(plan, 100, lambda e: min(e, 2))
    again = Plan(10, 0, 100, None, 2, Plan.load_state(json.loads(json.dumps(plan.state()))))
    assert [again.factor(e, s) for e in range(6) for s in range(10)] == [
        plan.factor(e, s) for e in range(6) for s in range(10)
    ]


@pytest.mark.slow
def test_a_budgeted_run_ends_on_its_plan_records_it_and_resumes(tmp_path):
    data = make_shapes_dataset(tmp_path / "shapes", per_class=20, size=24)
    stop_at = {"epoch": 2}

    def interrupt(epoch, row):
        if epoch == stop_at["epoch"]:
            raise KeyboardInterrupt

    from imgclf.core.errors import Interrupted

    with pytest.raises(Interrupted):
        imgclf.train(
            data,
            out=tmp_path / "run",
            model="simple_cnn",
            time_budget="5m",
            keep="best",  # its 6 validation images would choose keep=last and no plateau: 5 minutes
            verbose=False,
            on_epoch=interrupt,
        )
    assert read_training_info(tmp_path / "run" / STATE_FILE)["plan"]["spent"] > 0
    run = imgclf.train(resume=tmp_path / "run", verbose=False)
    training = json.loads((run.path / "model.json").read_text())["training"]
    assert training["plan"]["budget_s"] == 300 and training["plan"]["ended_by"] in ("plateau", "time", "epochs")
    assert training["epochs_run"] >= 3 and run.metrics["accuracy"] > 0.5
    history = (run.path / "history.csv").read_text().splitlines()
    assert len(history) == training["epochs_run"] + 1


@pytest.mark.slow
def test_epochs_or_a_preset_turn_the_clock_off_and_the_cli_prints_the_budget(tmp_path):
    data = make_shapes_dataset(tmp_path / "shapes", per_class=10, size=16)
    run = imgclf.train(data, out=tmp_path / "fixed", model="simple_cnn", epochs=2, verbose=False)
    training = json.loads((run.path / "model.json").read_text())["training"]
    assert training["epochs_run"] == 2 and training["plan"] is None
    flags = ["--model", "simple_cnn", "--img-size", "16", "--keep", "best"]  # best: a plateau may end it
    out = cli("train", str(data), *flags, "--out", str(tmp_path / "cli")).stdout
    assert re.search(r"default: time_budget=1m30s: \d+ ms for each of 24 training images", out)
    assert "training ends:" in out
    bad = cli("train", str(data), "--time-budget", "soon", check=False)
    assert bad.returncode == 2 and "--time-budget must be a duration" in bad.stderr and "Traceback" not in bad.stderr


def test_under_ddp_the_clock_is_read_between_epochs_and_still_ends_the_run_in_time():
    plan = Plan(steps_per_epoch=10, first_epoch=0, max_epochs=100, deadline=100.0, patience=99)
    plan.step_clock = False  # as budget_plan sets it when several ranks train
    now, factors = 0.0, []
    for epoch in range(100):
        plan.epoch_starts()
        for step in range(10):
            factors.append(plan.factor(epoch, step))
            now += 1.0
            if plan.step_done(epoch, step, now, check_time=False):
                break
        now += 2.0
        if plan.epoch_done(epoch, epoch, 1.0, 2.0, now, now):
            break
    assert plan.s.reason == "time" and 80 <= now <= 100 and factors[-1] < 0.2


def test_steps_that_slow_down_unforeseen_still_stop_at_the_end_of_the_budget():
    plan = Plan(steps_per_epoch=10, first_epoch=0, max_epochs=100, deadline=100.0, patience=99)
    now, steps = 0.0, 0
    for epoch in range(100):
        plan.epoch_starts()
        for step in range(10):
            now += 1.0 if now < 60 else 10.0  # another job takes the machine at 60 s
            steps += 1
            if plan.step_done(epoch, step, now):
                break
        if plan.epoch_done(epoch, epoch, 1.0, 0.0, now, now):
            break
    assert now <= 100 + 10 and plan.s.reason == "time"


def test_small_sets_of_large_photos_get_the_pixels_the_budget_affords(tmp_path, monkeypatch):
    """A few hundred 640x480 photos: the budget's floor affords more than 128 px, and the run says
    why; thousands of them get 160 px (they are larger than 224); smaller photos or no budget keep 128."""
    import numpy as np
    import torch
    from PIL import Image

    from imgclf.settings.config import TrainConfig
    from imgclf.training import defaults

    monkeypatch.setattr("imgclf.training.budget.compute_cores", lambda: 2)  # the 2-core machine
    photo = tmp_path / "frame.jpg"
    Image.fromarray(np.zeros((480, 640, 3), np.uint8)).save(photo)
    cfg, notes = defaults.resolve(TrainConfig(), [str(photo)] * 384, torch.device("cpu"))
    assert cfg.img_size in defaults.CPU_GROW_SIZES and cfg.time_budget == 90
    assert any(f"img_size={cfg.img_size}: median image side 480px, and the 1m30s budget affords" in n for n in notes)
    many, notes = defaults.resolve(TrainConfig(), [str(photo)] * 3000, torch.device("cpu"))
    assert many.img_size == defaults.DETAIL_SIZE and any("480px >= 224: more detail" in n for n in notes)
    fixed, _ = defaults.resolve(TrainConfig(epochs=3), [str(photo)] * 384, torch.device("cpu"))
    assert fixed.img_size == 128  # no budget: nothing to afford more pixels with
    # Photos only as large as 170 px get no more than they hold; many of them keep 128 px.
    assert defaults._afforded_size(128, 224, 3000, 180.0, "kept")[0] == 160
    assert defaults._afforded_size(128, 170, 384, 90.0, "kept")[0] == 160
    assert defaults._afforded_size(128, 170, 3000, 180.0, "kept") == (128, "kept")
    assert defaults._afforded_size(128, 120, 384, 90.0, "kept") == (128, "kept")


@pytest.mark.parametrize("n_val, keep", [(30, "last"), (99, "last"), (100, "best"), (0, "best")])
def test_a_validation_split_too_small_to_rank_epochs_ships_the_last_epoch_and_lets_the_budget_end_the_run(n_val, keep):
    import torch

    from imgclf.training.defaults import resolve

    cfg = TrainConfig(model="simple_cnn", img_size=16, time_budget="90s")
    chosen, notes = resolve(cfg, ["a.png"] * 300, torch.device("cpu"), n_val)
    assert chosen.keep == keep
    assert (chosen.patience == chosen.epochs) == (keep == "last")  # no plateau: the budget ends it
    assert any(line.startswith("keep=last") for line in notes) == (keep == "last")
    stated = resolve(
        TrainConfig(model="simple_cnn", img_size=16, keep="best", patience=3), ["a.png"], torch.device("cpu"), 30
    )[0]
    assert (stated.keep, stated.patience) == ("best", 3)  # what the user says stands


@pytest.mark.slow
def test_keep_last_ships_the_last_epochs_weights_and_keep_best_the_best(tmp_path):
    import yaml

    from imgclf.training.history import read_history

    data = make_shapes_dataset(tmp_path / "shapes", per_class=10, size=16)
    common = dict(model="simple_cnn", img_size=16, epochs=4, verbose=False)
    last = imgclf.train(data, out=tmp_path / "last", **common)  # 3 validation images: keep=last by default
    assert yaml.safe_load((last.path / "config.yaml").read_text())["keep"] == "last"
    assert (last.path / "model.safetensors").read_bytes() == (last.path / "last.safetensors").read_bytes()
    assert json.loads((last.path / "model.json").read_text())["training"]["best_epoch"] == 4

    best = imgclf.train(data, out=tmp_path / "best", keep="best", **common)
    chosen = json.loads((best.path / "model.json").read_text())["training"]["best_epoch"]
    rows = read_history(best.path / "history.csv")
    ranked = max(rows, key=lambda r: (r["val_acc"], -r["val_loss"]))  # accuracy, then the lower loss
    assert chosen == ranked["epoch"]
    assert chosen < 4 or (best.path / "model.safetensors").read_bytes() == (best.path / "last.safetensors").read_bytes()


def test_a_budget_too_short_for_every_image_takes_a_stratified_sample():
    import numpy as np

    from imgclf.training.afford import MIN_PER_CLASS, afforded_rows

    labels = np.repeat([0, 1, 2], [600, 300, 12])
    train = np.arange(len(labels))
    assert afforded_rows(train, labels, seconds=100.0, per_row=0.1, seed=0) is train  # 912 rows fit in 91.2 s
    rows = afforded_rows(train, labels, seconds=30.0, per_row=0.1, seed=0)  # 300 rows' worth
    counts = np.bincount(labels[rows], minlength=3)
    assert list(counts) == [197, 99, MIN_PER_CLASS]  # in proportion; the smallest class keeps a usable few
    assert np.all(np.diff(rows) > 0) and set(rows) <= set(train)
    assert np.array_equal(rows, afforded_rows(train, labels, 30.0, 0.1, seed=0))  # the run's seed decides
    none_left = afforded_rows(train, labels, seconds=-5.0, per_row=0.1, seed=1)  # decoding spent the budget
    assert list(np.bincount(labels[none_left])) == [MIN_PER_CLASS] * 3


def test_a_stated_budget_the_probe_cannot_cover_ships_a_probe_on_a_sample(tmp_path, monkeypatch, capsys):
    """CIFAR-10's 45,000 training images with --time-budget 2m ran 342 s: the probe embedded them all.
    Now it takes what the budget leaves (here: nothing), and fine-tuning, with no time, is skipped."""
    from imgclf.training import budget

    data = make_shapes_dataset(tmp_path / "shapes", per_class=40, size=40)
    monkeypatch.setattr(budget.StageClock, "left", lambda self, image_s, now=None: 0.0)
    imgclf.train(data, out=tmp_path / "run", time_budget="1m")
    out = capsys.readouterr().out
    assert "fine-tuning skipped: the time budget leaves no room for it after the linear probe (on 30 of" in out, out
    assert re.search(r"^done in \S+, (within|\S+ over) its 1m00s time budget$", out, re.M), out  # held or not: said
    probe = json.loads((tmp_path / "run" / "probe.json").read_text())
    assert probe["training_images"] == 30 and probe["training_images_of"] > 60
    assert probe["training_views"] == 30 and probe["sampled"] and probe["val_acc"] > 0.5  # no mirrors: see below
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["training"]["epochs_run"] == 0 and meta["training"]["best_epoch"] == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["accuracy"] > 0.5


def test_a_probe_the_budget_cuts_short_takes_twice_the_images_and_no_mirrors(monkeypatch):
    import numpy as np

    from imgclf.training import probe as probing

    monkeypatch.setattr(probing, "seconds_each", lambda *a, **k: 0.01)  # an image through the network
    labels, train = np.repeat([0, 1], 500), np.arange(1000)
    per_view = 0.01 + 2 * probing.FIT_VIEW_S  # embedding, and the C search's share for 2 classes
    rows, mirrors, _ = probing._budgeted(None, train, 0, labels, lambda s: 2000 * per_view + 1, 1.0, 0)
    assert mirrors and rows is train  # every image and its mirror fit
    rows, mirrors, _ = probing._budgeted(None, train, 0, labels, lambda s: 400 * per_view, 1.0, 0)
    assert not mirrors and len(rows) == 400  # 200 images and their mirrors would have fitted
    assert list(np.bincount(labels[rows])) == [200, 200]


@pytest.mark.parametrize("cheap_s, fits", [(2.0, 6), (0.0, 1)])
def test_a_cheap_c_search_goes_through_its_grid_past_the_deadline_and_a_costly_one_stops(cheap_s, fits, monkeypatch):
    """A small set's embedding can spend the probe's share of a short budget; its C search then took
    only the strongest C (C=0.001), though the whole grid costs a fraction of a second. Past the
    deadline the grid goes on while it is cheap (CHEAP_SEARCH_S); a costly one stops at once."""
    import time

    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from imgclf.training import probe as probing

    monkeypatch.setattr(probing, "CHEAP_SEARCH_S", cheap_s)
    tried = []
    fit = LogisticRegression.fit
    monkeypatch.setattr(LogisticRegression, "fit", lambda self, x, y: tried.append(self.C) or fit(self, x, y))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(120, 8)), np.repeat([0, 1], 60)
    x[y == 1, 0] += 1.0
    mu, sd = x.mean(0), x.std(0)
    past = time.monotonic() - 1  # the embedding spent the probe's share: the deadline has passed
    c, *_ = probing.choose_c(x[::2], y[::2], x[1::2], y[1::2], mu, sd, None, np.array([0, 1]), deadline=past)
    assert tried == list(probing.C_GRID[:fits]) and (c in tried)


def test_a_costly_candidate_samples_what_its_share_of_the_budget_affords():
    import time

    import numpy as np

    from imgclf.training.afford import candidate_rows

    labels, train = np.repeat([0, 1], 100), np.arange(200)
    timed = []
    fn = lambda rows: timed.append(len(rows)) or time.sleep(0.001 * len(rows))  # noqa: E731 - 1 ms a photo
    assert candidate_rows(fn, train, labels, 10, None, 0) is train and not timed  # no budget: nothing timed
    asked = []

    def allowance(each):  # the candidate's seconds a photo -> its share of what the budget leaves
        asked.append(each)
        return 60.5 * each  # room for 60 photos, 10 of them the validation split's

    rows = candidate_rows(fn, train, labels, 10, allowance, 0)
    assert timed == [2, 16] and asked and len(rows) == 50 and list(np.bincount(labels[rows])) == [25, 25]


@pytest.mark.slow
def test_ctrl_c_in_the_linear_probe_names_the_resume_that_finishes_the_run(tmp_path, monkeypatch):
    """The probe runs before the first epoch (minutes on a large set): Ctrl-C there names the run
    folder too, and --resume fits the probe again and finishes."""
    import imgclf.training.probe as probe
    from imgclf.core.errors import Interrupted

    data = make_shapes_dataset(tmp_path / "shapes", per_class=8, size=24)
    fit_probe = probe.fit_probe
    monkeypatch.setattr(probe, "fit_probe", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(Interrupted, match=f"imgclf train --resume {tmp_path / 'run'}$"):
        imgclf.train(data, out=tmp_path / "run", model="lite0", img_size=32, epochs=1, verbose=False)
    monkeypatch.setattr(probe, "fit_probe", fit_probe)
    run = imgclf.train(resume=tmp_path / "run", verbose=False)
    assert (run.path / "probe.json").is_file() and run.metrics["accuracy"] > 0.5
