"""The service's settings are declared once (settings.serve.ServeSettings): `imgclf serve`'s options,
their help and their checks come from the declarations."""

from __future__ import annotations

import pytest
import typer.main
from typer.testing import CliRunner

from imgclf.cli import app
from imgclf.core.errors import UserError
from imgclf.settings.declare import declared
from imgclf.settings.serve import ServeSettings


def test_serve_help_is_each_declarations_help():
    options = {p.name: p for p in typer.main.get_command(app).commands["serve"].params}
    on_cli = [f for f, _ in declared(ServeSettings) if f.metadata["cli"]]
    assert len(on_cli) >= 19
    for f in on_cli:
        assert options[f.name].help == f.metadata["help"], f.name
    assert options["api_key"].envvar == "IMGCLF_API_KEY"
    own = {"run", "registry", "alias", "host", "port", "backend", "device", "tta"}
    assert set(options) - {f.name for f in on_cli} == own


def test_serve_flags_reach_the_service_as_the_settings_they_spell(monkeypatch, tmp_path):
    from imgclf import api

    seen = {}
    monkeypatch.setattr(api, "serve", lambda run, **kw: seen.update(kw))
    monkeypatch.setenv("IMGCLF_API_KEY", "from-env")
    args = ["serve", str(tmp_path), "--no-batching", "--allowed-host", "a.example", "--allowed-host", "b.example"]
    result = CliRunner().invoke(app, [*args, "--cors", "https://x.example", "--max-images", "3"])
    assert result.exit_code == 0, result.output
    assert seen["batching"] is False and list(seen["allowed_hosts"]) == ["a.example", "b.example"]
    assert list(seen["cors"]) == ["https://x.example"] and seen["max_images"] == 3 and seen["api_key"] == "from-env"
    settings = ServeSettings(**{k: v for k, v in seen.items() if k in ServeSettings.__dataclass_fields__})
    assert settings.allowed_hosts == ("a.example", "b.example") and settings.cors == ("https://x.example",)


@pytest.mark.parametrize(
    "values, says",
    [
        ({"max_images": 0}, "max_images must be an integer from 1"),
        ({"log_sample": 1.5}, "log_sample must be a number in [0, 1]"),
        ({"max_scan_seconds": float("nan")}, "max_scan_seconds must be a number in (0, 3600]"),
        ({"log_images": "all"}, "choose one of keep, hash"),
        ({"max_connections": 1}, "max_connections must be an integer from 2"),
        ({"faces_backend": "tensorrt"}, "--faces-backend must be one of auto, onnx, onnx-int8, torch"),
        ({"api_key": " "}, "--api-key is empty"),
    ],
)
def test_bad_service_settings_are_one_line_each(values, says):
    with pytest.raises(UserError) as e:
        ServeSettings(**values)
    assert says in str(e.value) and "\n" not in str(e.value)
