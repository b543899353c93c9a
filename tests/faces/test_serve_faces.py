"""POST /faces/identify on a real server, beside a served classifier, and the page's "Who is this?"
naming the faces on the photo in headless Chromium. The gallery changes while serving (faces add)."""

from __future__ import annotations

import io

import httpx
import pytest
from helpers import CHROMIUM, CHROMIUM_ARGS, open_page, trained_run
from helpers import PAGE_KEY as KEY

import imgclf

pytest.importorskip("dlib")
serving = pytest.importorskip("imgclf.serving", reason="the web service needs fastapi and uvicorn")
pytestmark = pytest.mark.slow  # a trained run, served
from test_faces import EILEEN, GRACE, variants  # noqa: E402

import imgclf.faces as F  # noqa: E402
from imgclf.core.errors import UserError  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    run, _ = trained_run(tmp_path_factory)
    known = tmp_path_factory.mktemp("known")
    (known / "Grace").mkdir()
    for i, v in enumerate(variants(GRACE)[:3]):
        v.save(known / "Grace" / f"{i}.jpg")
    gallery = tmp_path_factory.mktemp("g") / "gallery"
    F.enrol(known, gallery, verbose=False)
    app = serving.create_app(imgclf.load(run), serving.ServeSettings(api_key=KEY, faces=str(gallery)))
    with serving.BackgroundServer(app) as url:
        yield url, gallery, run


def jpeg(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def post(url: str, data: bytes) -> httpx.Response:
    headers = {"Content-Type": "image/jpeg", "Authorization": f"Bearer {KEY}"}
    return httpx.post(f"{url}/faces/identify", content=data, headers=headers, timeout=60)


def test_identify_route_names_and_follows_the_gallery(served):
    url, gallery, _ = served
    info = httpx.get(f"{url}/model", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert info["faces"]["people"] == 1
    r = post(url, jpeg(variants(GRACE)[3]))
    assert r.status_code == 200, r.text
    assert [f["name"] for f in r.json()["faces"]] == ["Grace"] and r.json()["gallery"] == "gallery"
    assert post(url, jpeg(EILEEN)).json()["faces"][0]["name"] == "unknown"
    eileen = gallery.parent / "eileen"
    eileen.mkdir(exist_ok=True)
    for i, v in enumerate(variants(EILEEN)[:3]):
        v.save(eileen / f"{i}.jpg")
    F.add(gallery, "Eileen", [eileen], verbose=False)  # while serving: the next request sees her
    assert post(url, jpeg(EILEEN)).json()["faces"][0]["name"] == "Eileen"
    assert post(url, b"\xff\xd8\xff\xe0 broken").status_code in (415, 422)
    assert httpx.post(f"{url}/faces/identify", content=jpeg(GRACE)).status_code == 401  # the key guards it


def test_a_service_without_a_gallery_has_no_faces_route(served, tmp_path):
    _, _, run = served
    app = serving.create_app(imgclf.load(run), serving.ServeSettings())
    with serving.BackgroundServer(app) as url:
        r = httpx.post(f"{url}/faces/identify", content=jpeg(GRACE), headers={"Content-Type": "image/jpeg"})
        assert r.status_code == 404 and httpx.get(f"{url}/model").json()["faces"] is None
        assert "/faces/identify" not in httpx.get(f"{url}/openapi.json").json()["paths"]
    with pytest.raises(UserError, match="is not a face gallery"):
        serving.create_app(imgclf.load(run), serving.ServeSettings(faces=str(tmp_path)))


@pytest.mark.browser
def test_page_names_the_faces_on_the_photo(served, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (Debian package 'chromium'; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install -e '.[test]')")
    url, _, _ = served
    photo = tmp_path / "grace.jpg"
    variants(GRACE)[3].save(photo)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = open_page(browser, url)
            page.set_input_files("#file", [str(photo)])
            page.wait_for_selector(".card .tools .who")
            page.click(".card .tools .who")
            page.wait_for_selector(".card .view svg text")
            assert page.text_content(".card .view svg text") == "Grace"
            assert page.inner_text(".card .tools .note") == "Faces: Grace."
        finally:
            browser.close()
