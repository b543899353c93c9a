"""Explanations: on scenes with one object on a blank background at a known place, the heatmap of
every model family peaks on the object; the CLI writes overlays, the report shows the gallery and
the service answers POST /explain."""

from __future__ import annotations

import base64
import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import reporting
from PIL import Image

import imgclf
import imgclf.api
from imgclf.inference.explain import METHODS, Explainer, find_target_layer

SIDE = 40
MARGIN = 4  # px around the object's box (at 40 px) that still counts as "on the object"
FAMILIES = {  # name -> train settings: every family small enough to train in seconds
    "simple_cnn": dict(model="simple_cnn", img_size=32, epochs=6),
    "resnet_fast": dict(model="resnet_fast", img_size=40, epochs=3),
    # timm's ResNets reduce 32x, to 2x2 at 64 px: output_stride=8 (dilated last stages) keeps 8x8.
    "timm": dict(model="timm/resnet10t", img_size=64, epochs=2, model_kwargs={"output_stride": 8}, group_by="none"),
}


def make_scenes(root: Path, per_class: int = 30, seed: int = 0) -> dict[str, tuple[int, int, int, int]]:
    """A yellow square or a blue disc at a random place on a dark noisy background; the object's
    box (x0, y0, x1, y1) per file."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIDE, :SIDE]
    boxes = {}
    for cls in ("square", "disc"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.integers(0, 40, size=(SIDE, SIDE, 3)).astype(np.uint8)
            r = int(rng.integers(4, 7))
            cx, cy = (int(v) for v in rng.integers(r + 1, SIDE - r - 1, size=2))
            if cls == "square":
                img[cy - r : cy + r, cx - r : cx + r] = [250, 240, 60]
            else:
                img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = [60, 120, 250]
            path = root / cls / f"{cls}_{i:03d}.png"
            Image.fromarray(img).save(path)
            boxes[str(path)] = (cx - r, cy - r, cx + r, cy + r)
    return boxes


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    return root / "data", make_scenes(root / "data")


@pytest.fixture(scope="module")
def runs(scenes, tmp_path_factory):
    """Each family trained once, on first use. Only simple_cnn writes its report (the gallery test)."""
    done, root = {}, tmp_path_factory.mktemp("explain-runs")

    def get(family: str) -> Path:
        if family not in done:
            with reporting() if family == "simple_cnn" else contextlib.nullcontext():
                done[family] = imgclf.train(scenes[0], out=root / family, verbose=False, **FAMILIES[family]).path
        return done[family]

    return get


def on_object(heat: np.ndarray, box: tuple[int, int, int, int]) -> bool:
    k = heat.shape[0] / SIDE
    y, x = np.unravel_index(np.argmax(heat), heat.shape)
    x0, y0, x1, y1 = box
    return (x0 - MARGIN) * k <= x <= (x1 + MARGIN) * k and (y0 - MARGIN) * k <= y <= (y1 + MARGIN) * k


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_heatmap_peaks_on_the_object(family, scenes, runs):
    _, boxes = scenes
    model = imgclf.load(runs(family))
    results = imgclf.explain(model, list(boxes))
    size = FAMILIES[family]["img_size"]
    for r in results:
        assert r["heatmap"].shape == (size, size) and 0 <= r["heatmap"].min() and r["heatmap"].max() <= 1 + 1e-6
        assert r["target"] == r["label"] and r["method"] == "gradcam" and r["overlay"] is None
    hits = np.mean([on_object(r["heatmap"], boxes[r["path"]]) for r in results])
    assert hits >= 0.7, f"{family}: the heatmap peaks on the object for only {hits:.0%} of the images"


@pytest.mark.slow
def test_every_method_gives_maps(scenes, runs):
    model = imgclf.load(runs("simple_cnn"))
    x = model.preprocess(next(iter(scenes[1])))[None]
    explainer = Explainer(model)
    for method in METHODS:
        maps = explainer.heatmaps(x, [1], method)
        assert maps.shape == (1, 32, 32) and np.isfinite(maps).all() and maps.max() <= 1 + 1e-6, method


def test_vit_tokens_are_reshaped_to_the_patch_grid():
    import torch

    from imgclf.inference.model import Model
    from imgclf.models import create_model
    from imgclf.store.run_meta import InputSpec, Normalization, RunMeta

    net = create_model("timm/test_vit", num_classes=2, img_size=32)
    layer = find_target_layer(net, 32)
    assert layer.name.endswith(".norm1") and layer.shape[1:] == (2, 2) and layer.reshape is not None
    model = Model(
        net,
        RunMeta(
            classes=["a", "b"],
            input=InputSpec(size=32, resize="squash"),
            normalization=Normalization(mean=[0.5] * 3, std=[0.25] * 3),
        ),
        torch.device("cpu"),
    )
    maps = Explainer(model).heatmaps(np.zeros((1, 32, 32, 3), np.uint8), [1])
    assert maps.shape == (1, 32, 32)


def imgclf_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """Run `imgclf ARGS...` in this process (no second torch start-up): (exit code, stdout, stderr)."""
    from imgclf import cli

    monkeypatch.setattr("sys.argv", ["imgclf", *map(str, args)])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


@pytest.mark.slow
def test_cli_writes_overlays(scenes, runs, tmp_path, monkeypatch, capsys):
    run, (square, disc) = runs("simple_cnn"), (scenes[0] / "square" / "square_000.png", scenes[0] / "disc")
    code, out, err = imgclf_cli(
        monkeypatch,
        capsys,
        "explain",
        run,
        square,
        disc,
        "--class",
        "square",
        "--method",
        "gradcam++",
        "--out",
        tmp_path / "x",
    )
    assert code == 0, err
    assert "target layer: 19 (ReLU, 128x8x8 feature map)" in err and "square_000-gradcam++-square.png  square" in out
    written = sorted(p.name for p in (tmp_path / "x").iterdir())
    assert (
        len(written) == 32
        and "square_000-gradcam++-square.png" in written
        and "disc_007-gradcam++-square.png" in written
        and "explain.json" in written
    )
    # The index of what was drawn: one row an overlay, kept across a second explain into the folder.
    rows = json.loads((tmp_path / "x" / "explain.json").read_text())["images"]
    assert len(rows) == 31 and all(Path(r["overlay"]).is_file() and r["target"] == "square" for r in rows)
    assert imgclf_cli(monkeypatch, capsys, "explain", run, square, "--out", tmp_path / "x")[0] == 0
    rows = json.loads((tmp_path / "x" / "explain.json").read_text())["images"]
    assert len(rows) == 32 and rows[-1]["path"] == str(square) and rows[-1]["method"] == "gradcam"
    with Image.open(tmp_path / "x" / "square_000-gradcam++-square.png") as img:
        assert img.width >= 256 and img.height > img.width  # upscaled to be readable, caption below
    code, _, err = imgclf_cli(monkeypatch, capsys, "explain", run, square, "--class", "cat")
    assert code == 2 and err.startswith("error: unknown class 'cat'")
    (tmp_path / "notes.jpg").write_text("not a photo")  # nothing explained: exit 2, as predict and scan
    code, _, err = imgclf_cli(monkeypatch, capsys, "explain", run, tmp_path / "notes.jpg", "--out", tmp_path / "y")
    assert code == 2 and err.strip().endswith("error: none of the 1 image could be read (the reasons are above)"), err


@pytest.mark.slow
def test_report_has_the_explanation_gallery(runs):
    html = (runs("simple_cnn") / "report.html").read_text()
    section = html[html.index('<section id="explanations">') :]
    section = section[: section.index("</section>")]
    assert "Grad-CAM at layer" in section and "First-layer filters" in section
    assert 4 <= section.count("data:image/png;base64,") <= 2 * 16 + 1  # image | overlay pairs, and the filters
    assert 'href="#explanations"' in html


@pytest.mark.slow
def test_an_ensemble_explains_with_the_mean_of_its_members_maps(scenes, runs, tmp_path):
    """Members of other input sizes (32 and 40 px): each explains at its own size, the mean at the bundle's."""
    _, boxes = scenes
    bundle = imgclf.ensemble([runs("simple_cnn"), runs("resnet_fast")], out=tmp_path / "both", verbose=False)
    results = imgclf.explain(bundle.path, list(boxes))
    assert all(r["heatmap"].shape == (40, 40) and r["heatmap"].max() == pytest.approx(1.0) for r in results)
    assert results[0]["layer"].startswith("the mean of 2 members' maps")
    hits = np.mean([on_object(r["heatmap"], boxes[r["path"]]) for r in results])
    assert hits >= 0.7, f"the ensemble's heatmap peaks on the object for only {hits:.0%} of the images"


@pytest.mark.slow
def test_an_onnx_backed_model_is_explained_with_its_runs_weights(scenes, runs):
    """ONNX Runtime has no gradients: the map comes from the run's safetensors, the same network."""
    pytest.importorskip("onnxruntime")
    run = runs("simple_cnn")
    paths = list(scenes[1])[:6]
    torch_maps = [r["heatmap"] for r in imgclf.explain(run, paths)]
    onnx_results = imgclf.explain(imgclf.load(run, backend="onnx"), paths)
    for r, heat in zip(onnx_results, torch_maps):
        np.testing.assert_allclose(r["heatmap"], heat, atol=1e-4)


@pytest.mark.slow
def test_explain_route(scenes, runs):
    httpx = pytest.importorskip("httpx")
    serving = pytest.importorskip("imgclf.serving")
    model = imgclf.load(runs("resnet_fast"))
    path = next(p for p in scenes[1] if "square" in p)
    data = Path(path).read_bytes()
    with serving.BackgroundServer(serving.create_app(model, serving.ServeSettings(api_key="k"))) as url:
        auth = {"X-API-Key": "k"}
        r = httpx.post(f"{url}/explain?method=layercam", files={"file": ("a.png", data, "image/png")}, headers=auth)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == "resnet_fast" and body["method"] == "layercam" and body["target"] == body["label"]
        assert body["overlay"].startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(body["overlay"].split(",", 1)[1]))) as img:
            assert img.format == "PNG" and img.width >= 256
        heat = np.array(body["heatmap"])
        assert heat.shape == (14, 14) and 0 <= heat.min() and heat.max() <= 1
        raw = httpx.post(f"{url}/explain?target=disc", content=data, headers={**auth, "Content-Type": "image/png"})
        assert raw.status_code == 200 and raw.json()["target"] == "disc"
        two = httpx.post(
            f"{url}/explain",
            files=[("f", ("a.png", data, "image/png")), ("f", ("b.png", data, "image/png"))],
            headers=auth,
        )
        assert two.status_code == 400 and "one image" in two.json()["detail"]
        for query, said in (
            ("method=magic", "unknown method 'magic'; choose one of gradcam"),
            ("target=cat", "unknown target 'cat'; choose one of"),
        ):
            r = httpx.post(f"{url}/explain?{query}", content=data, headers=auth)
            assert r.status_code == 422 and r.json()["detail"].startswith(said), r.text
        assert httpx.post(f"{url}/explain", content=data).status_code == 401
        assert httpx.post(f"{url}/explain", content=b"not an image", headers=auth).status_code == 415
