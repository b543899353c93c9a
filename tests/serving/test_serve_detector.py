"""`imgclf serve` with no run folder: the pretrained person detector answers POST /predict (is a person
present: the same answer as `imgclf scan`) and POST /scan (where), on a real server started through the
command line, and on the page in headless Chromium. Photos: matplotlib's portrait, scikit-learn's two
person-free photos, and the portrait pasted small into one of them."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import httpx
import matplotlib.cbook
import pytest
from helpers import PAGE_KEY, chromium, open_page
from PIL import Image
from sklearn.datasets import load_sample_images

import imgclf
from imgclf.core.errors import UserError

serving = pytest.importorskip("imgclf.serving", reason="the web service needs fastapi and uvicorn")
PORTRAIT = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))  # 512 x 600
EMPTY = [Path(p) for p in load_sample_images().filenames]  # china.jpg, flower.jpg: no one in them


def jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photos() -> dict[str, bytes]:
    scene = Image.open(EMPTY[0]).convert("RGB")
    scene.paste(Image.open(PORTRAIT).convert("RGB").resize((96, 112)), (380, 150))
    return {
        "portrait": PORTRAIT.read_bytes(),
        **{p.stem: p.read_bytes() for p in EMPTY},
        "pasted": jpeg(scene),
        "black": jpeg(Image.new("RGB", (640, 480))),  # a covered camera: absent, as the scan says
    }


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The app `imgclf serve --api-key KEY` (no run) starts, listening, and what the command printed."""
    from imgclf import cli

    mp = pytest.MonkeyPatch()

    seen, printed = {}, io.StringIO()
    mp.setattr(serving.server, "run_server", lambda model, settings, *a, **kw: seen.update(m=model, s=settings))
    inbox = tmp_path_factory.mktemp("inbox")
    mp.setattr("sys.argv", ["imgclf", "serve", "--api-key", PAGE_KEY, "--inbox", str(inbox)])
    mp.setattr("sys.stdout", printed)
    try:
        cli.main()
    except SystemExit as e:
        assert e.code in (0, None), printed.getvalue()
    finally:
        mp.undo()
    with serving.BackgroundServer(serving.create_app(seen["m"], seen["s"])) as url:
        yield url, printed.getvalue(), seen["m"]


def post(url: str, route: str, data: bytes, query: str = "") -> httpx.Response:
    headers = {"Content-Type": "image/jpeg", "Authorization": f"Bearer {PAGE_KEY}"}
    return httpx.post(f"{url}{route}{query}", content=data, headers=headers, timeout=60)


def test_no_run_serves_the_person_detector_for_present_and_where(served, photos):
    url, printed, model = served
    assert "no run folder given: the pretrained person detector answers" in printed
    assert "serving the detector ssdlite-person" in printed
    info = httpx.get(f"{url}/model", headers={"Authorization": f"Bearer {PAGE_KEY}"}).json()
    assert info["kind"] == "detector" and info["classes"] == ["no person", "person"]
    assert model.detector is serving.scan_routes.loaded_detector("person", "auto")  # one detector for both routes
    assert info["scan"] is True and info["scan_with"] == "detector person" and info["explain"] is False
    scans = {name: imgclf.scan([Image.open(io.BytesIO(b))], verbose=False)[0] for name, b in photos.items()}
    for name, data in photos.items():
        r = post(url, "/predict", data)
        assert r.status_code == 200, r.text
        answer = r.json()["results"][0]
        # The same presence as the scan: one detector, one rule, one threshold.
        assert (answer["label"] == "person") == scans[name]["present"], name
        assert answer["confidence"] >= 0.5  # the class over even odds is the answer
    assert {n for n, s in scans.items() if s["present"]} == {"portrait", "pasted"}
    top = post(url, "/predict", photos["portrait"]).json()["results"][0]
    assert top["label"] == "person" and top["confidence"] > 0.9
    assert post(url, "/predict", photos["black"]).json()["results"][0]["label"] == "no person"
    where = post(url, "/scan", photos["pasted"]).json()
    assert where["present"] and where["count"] == 1
    box = where["boxes"][0]
    assert (
        340 < (box["x1"] + box["x2"]) / 2 < 520 and 110 < (box["y1"] + box["y2"]) / 2 < 300
    )  # pasted at 380-476, 150-262
    # where it looked: the boxes are the answer, said in one line (not a 500)
    r = post(url, "/explain", photos["portrait"])
    assert r.status_code == 501 and "POST /scan" in r.json()["detail"]


def test_feedback_and_the_page_work_on_the_detector(served, photos):
    url, _, _ = served
    headers = {"Authorization": f"Bearer {PAGE_KEY}"}
    r = httpx.post(
        f"{url}/feedback",
        files={"file": ("door.jpg", photos["china"], "image/jpeg")},
        data={"label": "no person"},
        headers=headers,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    with chromium() as browser:
        page = open_page(browser, url, loaded="no person")
        page.set_input_files("#file", [str(PORTRAIT)])
        page.wait_for_selector(".card .answer")
        assert page.inner_text(".card .answer").startswith("person ")
        page.click(".card .tools .find")
        page.wait_for_selector(".card .view svg rect")
        assert page.inner_text(".card .tools .note") == "person: 1 found (boxes drawn)."
        assert page.query_selector(".card .tools .look") is None  # no heat map to show: the boxes are "where"


def test_the_options_of_a_classifier_run_are_one_line(tmp_path, monkeypatch, capsys):
    """--tta and --backend are a classifier run's; a detector run and another --detector are two
    detectors. Each is refused in one line before anything loads."""
    from imgclf import cli

    for args, expected in (
        (["--tta", "flip"], "--tta is an option of a classifier run"),
        (["--backend", "onnx"], "--backend is an option of a classifier run"),
    ):
        monkeypatch.setattr("sys.argv", ["imgclf", "serve", *args])
        with pytest.raises(SystemExit) as exit_:
            cli.main()
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and expected in err and len(err.strip().splitlines()) == 1, err
    run = tmp_path / "det"
    run.mkdir()
    (run / "detector.json").write_text("{}")
    with pytest.raises(UserError, match="is a detector run and --detector names another"):
        serving.server._served_detector(run, "other-run", "auto", None)
    assert serving.server._served_detector(run, None, "auto", None) == str(run)
    assert serving.server._served_detector(None, None, "auto", None) == "person"


def test_serve_person_names_the_detector_as_predict_and_evaluate_do(tmp_path, monkeypatch, capsys):
    """`imgclf serve person` serves the pretrained detector (it was "not a run"); with --detector naming
    another, one line."""
    from imgclf import cli

    seen = {}
    monkeypatch.setattr(serving.server, "run_server", lambda model, settings, *a, **kw: seen.update(m=model))
    monkeypatch.setattr(serving.server, "check_bindable", lambda host, port: socket.socket())  # no port taken
    monkeypatch.chdir(tmp_path)  # no folder named person here
    for args in (["person"], ["person", "--detector", "elsewhere/run"]):
        monkeypatch.setattr("sys.argv", ["imgclf", "serve", *args])
        with pytest.raises(SystemExit) as exit_:
            cli.main()
        if "--detector" not in args:
            assert exit_.value.code in (0, None), capsys.readouterr()
            assert seen["m"].name == "ssdlite-person" and seen["m"].classes == ["no person", "person"]
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: person is the pretrained detector and --detector"), err
