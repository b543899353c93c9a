"""Every training setting is checked once, wherever it comes from, before any run folder exists."""

from __future__ import annotations

import math

import pytest
from helpers import TINY, cli, make_shapes_dataset
from hypothesis import given, settings
from hypothesis import strategies as st

import imgclf
from imgclf.core.errors import UserError
from imgclf.settings.config import NUMBERS, TrainConfig, check_train_settings, load_config


@pytest.mark.parametrize(
    "settings_, message",
    [
        ({"batch_size": 0}, "batch_size must be an integer from 1 to 65536, not 0"),
        ({"batch_size": -5}, "batch_size must be an integer from 1 to 65536, not -5"),
        ({"img_size": 1}, "img_size must be an integer from 16 to 1024, not 1"),
        ({"img_size": -32}, "img_size must be an integer from 16 to 1024, not -32"),
        ({"img_size": 100000}, "img_size must be an integer from 16 to 1024, not 100000"),
        ({"lr": -1.0}, "lr must be a number in (0, 10], not -1.0"),
        ({"lr": math.nan}, "lr must be a number in (0, 10], not nan"),
        ({"lr": math.inf}, "lr must be a number in (0, 10], not inf"),
        ({"epochs": 0}, "epochs must be an integer from 1 to 10000, not 0"),
        ({"epochs": 2.5}, "epochs must be an integer from 1 to 10000, not 2.5"),
        ({"weight_decay": -0.1}, "weight_decay must be a number in [0, 10], not -0.1"),
        ({"label_smoothing": 1.0}, "label_smoothing must be a number in [0, 1), not 1.0"),
        ({"patience": 0}, "patience must be an integer from 1 to 10000, not 0"),
        ({"seed": -1}, "seed must be an integer from 0 to 4294967295, not -1"),
        ({"flip": "no"}, "flip must be true or false, not 'no'"),
        ({"optimizer": "adam"}, "unknown optimizer 'adam'; choose one of adamw, sgd"),
        ({"test_frac": 0.85, "val_frac": 0.2}, "val_frac 0.2 + test_frac 0.85 = 1.05 leaves no training images"),
        ({"val_frac": -0.1}, "val_frac must be a number in [0, 1), not -0.1"),
        ({"target_accuracy": 0.9, "target_coverage": 0.5}, "give target_accuracy or target_coverage, not both"),
        ({"augment": {"translate": 40}, "img_size": 32}, "augment translate 40 must be smaller than img_size 32"),
    ],
)
def test_bad_settings_are_refused_in_one_line_naming_setting_value_and_range(settings_, message):
    with pytest.raises(UserError) as e:
        TrainConfig(**settings_)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_yaml_values_are_read_as_the_user_meant():
    """YAML 1.1 reads 1e-3 as a string and a class folder named 1 as a number."""
    cfg = TrainConfig.from_dict({"lr": "1e-3", "epochs": 10.0, "positive_class": 1})
    assert cfg.lr == 0.001 and cfg.epochs == 10 and isinstance(cfg.epochs, int) and cfg.positive_class == "1"


def test_a_config_file_is_checked_too(tmp_path):
    (tmp_path / "bad.yaml").write_text("lr: 1e-3\nbatch_size: 0\n")
    with pytest.raises(UserError) as e:
        load_config(tmp_path / "bad.yaml")
    assert str(e.value) == f"config file {tmp_path / 'bad.yaml'}: batch_size must be an integer from 1 to 65536, not 0"


def test_a_config_file_s_mistakes_are_one_line_that_points_at_them(tmp_path):
    """PyYAML's own message spans five lines with a caret; a misspelt key hid among 50 valid names."""
    (tmp_path / "broken.yaml").write_text("lr: 1e-3\naugment: [flip\n")
    with pytest.raises(UserError) as e:
        load_config(tmp_path / "broken.yaml")
    assert str(e.value) == (
        f"config file {tmp_path / 'broken.yaml'} is not valid YAML: expected ',' or ']', but got "
        "'<stream end>' (line 3, column 1)"
    )
    (tmp_path / "model.safetensors").write_bytes(b"\xc8\x00\x00\x00{}")  # a model file where the YAML belongs
    with pytest.raises(UserError, match=r"model.safetensors is not a text file \(YAML\); give a mapping of setting"):
        load_config(tmp_path / "model.safetensors")
    (tmp_path / "typo.yaml").write_text("epocs: 3\nimg_sise: 64\nlearning_speed: 2\n")
    with pytest.raises(UserError) as e:
        load_config(tmp_path / "typo.yaml")
    said = str(e.value)
    assert said.startswith(
        f"config file {tmp_path / 'typo.yaml'}: unknown setting(s) epocs, img_sise, learning_speed (did you mean 'epochs' or 'img_size'?); valid: amp,"
    )
    assert "\n" not in said


def test_a_config_file_may_spell_settings_as_the_command_line_does(tmp_path):
    (tmp_path / "flags.yaml").write_text("img-size: 64\n--batch-size: 8\nlr: 1e-3\n")
    cfg = load_config(tmp_path / "flags.yaml")
    assert (cfg.img_size, cfg.batch_size, cfg.lr) == (64, 8, 0.001)
    (tmp_path / "twice.yaml").write_text("img-size: 64\nimg_size: 32\n")
    with pytest.raises(UserError, match="'img-size' and 'img_size' are the same setting; give it once"):
        load_config(tmp_path / "twice.yaml")


def test_refused_starts_leave_no_run_folder(shapes, tmp_path, monkeypatch, capsys):
    from imgclf.cli import main

    out = tmp_path / "run"
    # In-process (the CLI's own entry point, its exit code and stderr): a subprocess per case cost 3 s of imports.
    for flags, said in (
        (["--batch-size", "0"], "error: --batch-size must be an integer from 1 to 65536, not 0"),
        (["--img-size", "100000"], "error: --img-size must be"),  # named as typed, not as the config key
        (["--lr", "nan"], "error: --lr must be"),
        (["--epochs", "0"], "error: --epochs must be"),
        (["--test-frac", "0.95"], "leaves no training images"),
    ):
        monkeypatch.setattr("sys.argv", ["imgclf", "train", str(shapes), *flags, "--out", str(out)])
        with pytest.raises(SystemExit) as exit:
            main()
        err = capsys.readouterr().err
        assert exit.value.code == 2 and err.startswith("error: ") and said in err, err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert not out.exists()
    with pytest.raises(UserError, match="lr must be"):
        imgclf.train(shapes, lr=-1, out=out, verbose=False)
    assert not out.exists()


def test_out_naming_an_existing_file_is_refused(shapes, tmp_path):
    (tmp_path / "taken").write_text("a file")
    p = cli("train", shapes, "--out", tmp_path / "taken", check=False)
    assert (
        p.returncode == 2
        and p.stderr == f"error: --out '{tmp_path / 'taken'}' is an existing file; give a folder for the run\n"
    )
    with pytest.raises(UserError, match="taken is a file"):
        TrainConfig(out=str(tmp_path / "taken" / "run"))


def test_a_split_without_validation_images_is_refused_before_decoding(tmp_path):
    """Ten images a class with test_frac 0.88 leave one for train and val: no class can spare it."""
    data = make_shapes_dataset(tmp_path / "small", per_class=10, size=16)
    with pytest.raises(UserError, match="val_frac 0.1 gives no validation image.*test_frac 0.88"):
        imgclf.train(data, test_frac=0.88, out=tmp_path / "run", verbose=False, **TINY)
    assert not (tmp_path / "run").exists()


def test_check_uses_the_same_checks(shapes):
    with pytest.raises(UserError, match="leaves no training images"):
        imgclf.check(shapes, val_frac=0.5, test_frac=0.5, verbose=False)


ANY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.floats().map(str),
    st.integers().map(str),
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(NUMBERS)), ANY, max_size=5))
def test_any_numeric_settings_are_accepted_or_refused_in_one_line(values):
    """Never a traceback: each value is either a valid setting or one line saying what is allowed."""
    try:
        checked = check_train_settings(values)
    except UserError as e:
        assert "\n" not in str(e) and str(e)
        return
    for name, v in checked.items():
        rule = NUMBERS[name]
        assert (v is None and rule.optional) or (
            type(v) is rule.kind and math.isfinite(v) and rule.low <= v <= rule.high
        )
