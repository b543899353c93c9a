"""The service under abuse (issue 19), over real HTTP and raw sockets against a localhost server:
degenerate images sent to /scan and /explain, many distinct scan options, cross-site posts and
foreign Host headers on a keyless service, hostile /feedback labels, slow clients, a bad port."""

from __future__ import annotations

import io
import socket
import time

import numpy as np
import pytest
from helpers import CHROMIUM, CHROMIUM_ARGS, png_header, trained_run
from PIL import Image

import imgclf

httpx = pytest.importorskip("httpx")
serving = pytest.importorskip("imgclf.serving", reason="the web service needs fastapi and uvicorn")
pytestmark = pytest.mark.slow  # every test here trains a model, itself or through a fixture


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return trained_run(tmp_path_factory)


@pytest.fixture(scope="module")
def model(trained):
    return imgclf.load(trained[0])


def png(width: int, height: int) -> bytes:
    """A real, fully decodable PNG of mid grey: 20000 x 1 compresses to about a hundred bytes."""
    out = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(out, "PNG", optimize=True)
    return out.getvalue()


def image(data, cls: str = "square", i: int = 0) -> bytes:
    return (data / cls / f"{cls}_{i:03d}.png").read_bytes()


def test_degenerate_images_are_refused_before_decoding(model, trained):
    _, data = trained
    strip = png(20_000, 1)
    assert len(strip) < 200
    settings = serving.ServeSettings(max_windows=1_000)
    with serving.BackgroundServer(serving.create_app(model, settings)) as url:
        cases = {
            "20000 x 1 png": (strip, 413, "long side"),
            "5000 x 2 png": (png(5000, 2), 422, "aspect ratio"),
            "40,000,000 x 1 png header": (png_header(40_000_000, 1), 413, "long side"),
            "1 x 13,000 png header": (png_header(1, 13_000), 413, "long side"),
        }
        for route in ("scan?positive=square", "explain"):
            for name, (body, status, word) in cases.items():
                start = time.monotonic()
                r = httpx.post(f"{url}/{route}", content=body, headers={"Content-Type": "image/png"}, timeout=30)
                assert (r.status_code, route, name) == (status, route, name) and word in r.json()["detail"], r.text
                took = time.monotonic() - start
                assert took < 2, f"{route} {name}: refused only after {took:.1f} s"
        # Nothing sent at all is told apart from an empty image.
        r = httpx.post(f"{url}/predict", content=b"")
        assert r.status_code == 400 and r.json()["detail"].startswith("no image in the request: send one"), r.text
        r = httpx.post(f"{url}/predict", files={"file": ("a.png", b"", "image/png")})
        assert r.status_code == 400 and r.json()["detail"] == "the image is empty (0 bytes)", r.text
        # A photo of ordinary shape whose options would cost too many windows: refused from its size alone.
        photo = png(120, 80)
        r = httpx.post(f"{url}/scan?positive=square&min_size=8", content=photo, headers={"Content-Type": "image/png"})
        assert r.status_code == 413 and "windows" in r.json()["detail"] and "min_size" in r.json()["detail"], r.text
        # The same photo at the default window size is scanned, and the estimate was the true count.
        r = httpx.post(f"{url}/scan?positive=square", content=photo, headers={"Content-Type": "image/png"}, timeout=60)
        assert r.status_code == 200, r.text
        from imgclf.scanning import Scanner

        assert r.json()["windows"] == Scanner(model, "square").windows(120, 80) > 1


def test_a_48_megapixel_phone_photo_is_answered_with_the_default_limits(model):
    """A phone's main camera at full resolution (8064 x 6048) passes the default --max-pixels and
    --max-upload-mb; one pixel over the limit is still refused from the header."""
    rng = np.random.default_rng(0)
    small = Image.fromarray(rng.integers(0, 255, (63, 84, 3), dtype=np.uint8))
    out = io.BytesIO()
    small.resize((8064, 6048), Image.Resampling.NEAREST).save(out, "JPEG", quality=80)
    settings = serving.ServeSettings()
    assert len(out.getvalue()) < settings.max_upload_bytes
    with serving.BackgroundServer(serving.create_app(model, settings)) as url:
        r = httpx.post(f"{url}/predict", content=out.getvalue(), headers={"Content-Type": "image/jpeg"}, timeout=60)
        assert r.status_code == 200 and r.json()["results"][0]["label"] in model.classes, r.text
    with serving.BackgroundServer(serving.create_app(model, serving.ServeSettings(max_pixels=8064 * 6048 - 1))) as url:
        r = httpx.post(f"{url}/predict", content=out.getvalue(), headers={"Content-Type": "image/jpeg"}, timeout=60)
        assert r.status_code == 413 and "--max-pixels" in r.json()["detail"], r.text


def test_scan_options_are_validated(model, trained):
    _, data = trained
    with serving.BackgroundServer(serving.create_app(model)) as url:
        for query in (
            "iou=0",
            "iou=nan",
            "iou=2",
            "threshold=1",
            "threshold=nan",
            "threshold=inf",
            "min_size=0",
            "min_size=-5",
            "min_size=1000000000",
            "min_size=abc",
            "min_size=8.5",
            "iou=",
        ):
            r = httpx.post(
                f"{url}/scan?positive=square&{query}", content=image(data), headers={"Content-Type": "image/png"}
            )
            # One line, as `imgclf train` words a bad flag: the parameter, the value, what is allowed.
            name, value = query.split("=")
            assert r.status_code == 422 and r.json()["detail"].startswith(f"{name} must be "), (query, r.text)
            assert r.json()["detail"].endswith(f", not {value!r}"), (query, r.text)
        for route, query, said in (
            ("predict", "top_k=0", "top_k must be an integer from 1 to 1000, not '0'"),
            ("predict", "top_k=1e9", "top_k must be an integer from 1 to 1000, not '1e9'"),
            ("scan", "iou=inf", "iou must be a number in (0, 1], not 'inf'"),
            ("scan", "positive=cat", "unknown positive 'cat'; choose one of disc, square, stripes"),
            ("explain", "method=x", "unknown method 'x'; choose one of gradcam"),
        ):
            r = httpx.post(f"{url}/{route}?{query}", content=image(data), headers={"Content-Type": "image/png"})
            assert r.status_code == 422 and r.json()["detail"].startswith(said), (route, query, r.text)
        # A whole number written as one is still a count (as in a YAML config); the answer is unchanged.
        r = httpx.post(f"{url}/predict?top_k=2.0", content=image(data), headers={"Content-Type": "image/png"})
        assert r.status_code == 200 and len(r.json()["results"][0]["top_k"]) == 2, r.text
    from imgclf.scanning import Scanner

    for scales in ([0, -1], [float("nan")], [float("inf")], []):
        with pytest.raises(imgclf.core.errors.UserError, match="--scales"):
            Scanner(model, "square", scales=scales)


def test_cli_scan_with_nonpositive_scales_is_a_usage_error(trained, monkeypatch, capsys):
    from imgclf import cli

    run, data = trained
    monkeypatch.setattr(
        "sys.argv",
        [
            "imgclf",
            "scan",
            str(run),
            str(data / "square" / "square_000.png"),
            "--positive",
            "square",
            "--scales",
            "0,-1",
        ],
    )
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "--scales" in err and "Traceback" not in err


def test_distinct_scan_options_leave_the_scanner_cache_small(model, trained):
    _, data = trained
    app = serving.create_app(model)
    with serving.BackgroundServer(app) as url, httpx.Client(timeout=30) as client:
        for i in range(40):
            # min_size >= the 24 px photo: one window each, so each scan is quick
            query = f"positive=square&threshold={0.05 + i * 0.02:.2f}&iou={0.2 + i * 0.01:.2f}&min_size={24 + i}"
            r = client.post(
                f"{url}/scan?{query}", content=image(data, "square", i % 10), headers={"Content-Type": "image/png"}
            )
            assert r.status_code == 200, r.text
            assert r.json()["threshold"] == pytest.approx(0.05 + i * 0.02)
        # One scanner (one copy of the trunk) for the one model and class, whatever the options.
        assert app.state.scanners.cache_info().currsize == 1
        for cls in ("square", "disc", "stripes", "square", "disc"):
            assert (
                client.post(
                    f"{url}/scan?positive={cls}", content=image(data), headers={"Content-Type": "image/png"}
                ).status_code
                == 200
            )
        assert app.state.scanners.cache_info().currsize == 3
    # A swap drops the old model's scanners (and with them its network).
    holder = serving.ModelHolder(model)
    app = serving.create_app(holder)
    app.state.scanners(model, "square")
    holder.swap(imgclf.load(trained[0]), version=2)
    assert app.state.scanners.cache_info().currsize == 0


def feedback(url: str, data, label: str = "square", **kw):
    headers = kw.pop("headers", {})
    fields = {"label": label, **kw}
    return httpx.post(
        f"{url}/feedback", files={"file": ("x.png", image(data, "disc", 3), "image/png")}, data=fields, headers=headers
    )


def test_cross_site_writes_and_foreign_hosts_are_refused_on_a_keyless_service(model, trained, tmp_path):
    _, data = trained
    inbox, log = tmp_path / "inbox", tmp_path / "log"
    settings = serving.ServeSettings(
        inbox=str(inbox), log_predictions=str(log), allowed_hosts=("box.lan",), cors=("https://trusted.example",)
    )
    with serving.BackgroundServer(serving.create_app(model, settings)) as url:
        host = url.removeprefix("http://")
        for headers in (
            {"Origin": "https://evil.example"},
            {"Origin": "null"},
            {"Sec-Fetch-Site": "cross-site"},
            {"Origin": f"http://{host}.evil.example"},
            {"Origin": "http://localhost:1"},
        ):
            r = feedback(url, data, headers=headers)
            assert r.status_code == 403 and "cross-site" in r.json()["detail"], (headers, r.text)
            r = httpx.post(f"{url}/predict", content=image(data), headers={"Content-Type": "image/png", **headers})
            assert r.status_code == 403, (headers, r.text)  # it would write the prediction log
        assert not (inbox / "square").exists()
        # The service's own page (Origin: this server), a trusted --cors origin, and curl (no Origin) may write.
        for headers in ({"Origin": url, "Sec-Fetch-Site": "same-origin"}, {"Origin": "https://trusted.example"}, {}):
            assert feedback(url, data, headers=headers).status_code == 200, headers
            r = httpx.post(f"{url}/predict", content=image(data), headers={"Content-Type": "image/png", **headers})
            assert r.status_code == 200 and r.json()["results"][0]["label"] == "square", r.text
        assert (inbox / "square").is_dir()
        # Routes that cost seconds of work take the same rule (issue 37): another site's page cannot
        # make a keyless service scan for it; its own page and curl can.
        for route in ("scan?positive=square", "explain"):
            for headers, status in (({"Origin": "https://evil.example"}, 403), ({"Origin": url}, 200), ({}, 200)):
                r = httpx.post(f"{url}/{route}", content=image(data), headers={"Content-Type": "image/png", **headers})
                assert r.status_code == status, (route, headers, r.text)

        port = host.rsplit(":", 1)[1]
        for name in ("evil.example", f"evil.example:{port}", "localhost.evil.example", "box.lan.evil.example"):
            r = httpx.get(f"{url}/health", headers={"Host": name})
            assert r.status_code == 421 and "--allowed-host" in r.json()["detail"], (name, r.text)
        assert feedback(url, data, headers={"Host": "evil.example", "Origin": "http://evil.example"}).status_code == 421
        for name in (f"localhost:{port}", "LOCALHOST.", f"box.lan:{port}", "[::1]:80", "10.1.2.3", host):
            assert httpx.get(f"{url}/health", headers={"Host": name}).status_code == 200, name

    # With an API key a cross-site page cannot send the key, so the key alone decides.
    keyed = serving.ServeSettings(api_key="k", inbox=str(inbox))
    with serving.BackgroundServer(serving.create_app(model, keyed)) as url:
        assert feedback(url, data, headers={"Origin": "https://evil.example"}).status_code == 401
        assert feedback(url, data, headers={"Origin": "https://tool.example", "X-API-Key": "k"}).status_code == 200


def test_feedback_labels_and_text_fields_are_checked(model, trained, tmp_path):
    _, data = trained
    inbox = tmp_path / "inbox"
    with serving.BackgroundServer(serving.create_app(model, serving.ServeSettings(inbox=str(inbox)))) as url:
        bad = {
            "🌹" * 64: "bytes",
            "feedback.jsonl": "reserved",
            "FEEDBACK.JSONL": "reserved",
            ".": "reserved",
            "..": "reserved",
            ".git": "reserved",
            "nul.txt": "reserved",
            "rose\u200b": "invisible",
            "ro\u202ese": "invisible",
            "a\u00a0b": "invisible",
            "tab\there": "invisible",
            "\u3164": "invisible",
            "r\u043ese": "look-alike",
            "\uff52\uff4f\uff53\uff45": "compatibility",
            "rose.": "ends with",
            "a/b": "slash",
            "unknown": "reserved",
            "": "empty",
            "   ": "empty",
        }
        for label, word in bad.items():
            r = feedback(url, data, label)
            assert r.status_code == 422 and word in r.json()["detail"], (label, r.text)
        for fields, word in (
            ({"who": "x" * 100_000}, "who"),
            ({"who": "ann\u202e"}, "who"),
            ({"predicted": "p" * 201}, "predicted"),
            ({"prediction_id": "../../etc/passwd"}, "prediction_id"),
        ):
            r = feedback(url, data, **fields)
            assert r.status_code == 422 and word in r.json()["detail"], (fields, r.text)
        for value in ("nan", "inf", "7", "-0.5", "high"):
            r = feedback(url, data, predicted="disc", confidence=value)
            assert (
                r.status_code == 422 and r.json()["detail"] == f"confidence must be a number in [0, 1], not {value!r}"
            )
        # A new class named through the service is a plain ASCII name, the rule its OpenAPI schema states
        # whole; "café" (any script) comes in through imgclf feedback import, which composes it as NFC.
        r = feedback(url, data, "cafe\u0301", who="a" * 200, predicted="disc", confidence="0.25")
        assert r.status_code == 422 and "imgclf feedback import" in r.json()["detail"], r.text
        r = feedback(url, data, "new class", who="a" * 200, predicted="disc", confidence="0.25")
        assert r.status_code == 200 and r.json()["label"] == "new class", r.text
        assert r.json()["path"].startswith("new class/") and (inbox / "new class").is_dir()
    assert sorted(p.name for p in inbox.iterdir() if p.is_dir()) == ["new class"]
    from imgclf.store.inbox import records

    [stored] = records(inbox)
    assert stored["previous"]["confidence"] == 0.25 and stored["previous"]["label"] == "disc"


def closed_within(sock: socket.socket, seconds: float) -> bytes | None:
    """What the server sent before closing the connection, or None if it is still open after `seconds`."""
    sock.settimeout(0.2)
    got, deadline = b"", time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return got
        if not chunk:
            return got
        got += chunk
    return None


def test_slow_clients_are_cut_off(model, trained):
    _, data = trained
    settings = serving.ServeSettings(read_timeout_s=1.0, max_connections=4)
    with serving.BackgroundServer(serving.create_app(model, settings)) as url:
        port = int(url.rsplit(":", 1)[1])
        connect = lambda: socket.create_connection(("127.0.0.1", port), timeout=5)  # noqa: E731

        silent = connect()  # connects and says nothing
        assert closed_within(silent, 3) == b""
        trickle = connect()  # a header line every 0.3 s: never complete
        start = time.monotonic()
        trickle.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        while time.monotonic() - start < 3:
            try:
                trickle.sendall(b"X-Slow: 1\r\n")
            except OSError:
                break
            time.sleep(0.3)
        assert closed_within(trickle, 1) is not None and time.monotonic() - start < 3

        short = connect()  # promises 1000 bytes, sends 10
        short.sendall(
            b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
            b"Content-Length: 1000\r\n\r\n0123456789"
        )
        answer = closed_within(short, 4)
        assert answer is not None and answer.startswith(b"HTTP/1.1 408") and b"stalled" in answer, answer

        huge = connect()  # endless headers, sent fast
        huge.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Pad: " + b"a" * 100_000)
        assert closed_within(huge, 2) is not None

        # Connections beyond the limit are turned away (503) until the idle ones are cut off.
        idle = [connect() for _ in range(settings.max_connections)]
        time.sleep(0.2)
        assert httpx.get(f"{url}/health").status_code == 503
        for s in idle:
            assert closed_within(s, 3) == b""
        assert httpx.get(f"{url}/health").status_code == 200
        # A well-behaved keep-alive client is not affected by the header deadline.
        with httpx.Client() as client:
            for _ in range(3):
                assert client.get(f"{url}/health").status_code == 200
                time.sleep(0.6)
        for s in (silent, trickle, short, huge, *idle):
            s.close()


@pytest.mark.parametrize("port", ["99999", "0", "-1", "65536"])
def test_port_out_of_range_is_a_one_line_error(trained, monkeypatch, capsys, port):
    import uvicorn

    from imgclf import cli

    # Without the check, uvicorn would start (on some other port) and the test would wait forever.
    monkeypatch.setattr(uvicorn.Server, "run", lambda *a, **kw: pytest.fail(f"started serving with --port {port}"))
    monkeypatch.setattr("sys.argv", ["imgclf", "serve", str(trained[0]), "--port", port])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "--port" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    with pytest.raises(imgclf.core.errors.UserError, match="port"):
        serving.run_server(None, serving.ServeSettings(), port=int(port))


@pytest.mark.parametrize("where", ["port in use", "host not here"])
def test_an_address_it_cannot_listen_on_is_one_line_before_the_model_loads(trained, monkeypatch, capsys, where):
    """uvicorn says "address already in use" only after the model has loaded and the app started,
    among its INFO lines, and exits 3; a second `imgclf serve` on the same port is a common slip."""
    import socket

    import imgclf.inference.load
    from imgclf import cli

    monkeypatch.setattr(imgclf.inference.load, "load_model", lambda *a, **kw: pytest.fail("loaded the model"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["--port", str(port)] if where == "port in use" else ["--host", "192.0.2.1"]  # TEST-NET-1
        monkeypatch.setattr("sys.argv", ["imgclf", "serve", str(trained[0]), *args])
        with pytest.raises(SystemExit) as exit_:
            cli.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    expected = f"port {port} on 127.0.0.1 is already in use" if where == "port in use" else "not an address of this"
    assert expected in err, err


def test_the_port_is_held_from_before_the_model_loads():
    """Two `imgclf serve` started together: the second is refused at its check, not by uvicorn after
    its own model load (the port was only tried, then let go, before)."""
    from imgclf.core.errors import UserError
    from imgclf.serving.server import check_bindable

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    held = check_bindable("127.0.0.1", port)
    with pytest.raises(UserError, match=f"port {port} on 127.0.0.1 is already in use"):
        check_bindable("127.0.0.1", port)
    held.close()
    check_bindable("127.0.0.1", port).close()


def test_serve_passes_allowed_hosts_and_deadlines_to_uvicorn(trained, monkeypatch, capsys):
    import uvicorn

    from imgclf import cli

    seen = {}
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, **kw: seen.update(vars(self.config)))
    # 10.0.0.7 stands for a LAN address: it is not this machine's, which serve otherwise refuses.
    monkeypatch.setattr(imgclf.serving.server, "check_bindable", lambda host, port: socket.socket())
    monkeypatch.setattr(
        "sys.argv",
        [
            "imgclf",
            "serve",
            str(trained[0]),
            "--port",
            "8123",
            "--host",
            "10.0.0.7",
            "--allowed-host",
            "Box.LAN",
            "--allowed-host",
            "imgclf.example.org",
        ],
    )
    try:
        cli.main()
    except SystemExit as e:
        assert e.code in (0, None)
    settings = seen["app"].state.settings
    assert {"box.lan", "imgclf.example.org", "10.0.0.7"} <= set(settings.allowed_hosts)
    assert seen["port"] == 8123 and seen["limit_concurrency"] == settings.max_connections
    assert seen["http"].header_timeout == settings.read_timeout_s
    assert seen["timeout_graceful_shutdown"] <= 5  # SIGTERM: the service is gone within seconds (issue 37)
    # The startup line names what backend auto chose (this simple_cnn's adaptive pooling is beyond the
    # in-memory export training tries, so it has no model.onnx and runs in PyTorch), not "auto".
    engine = imgclf.load(trained[0], backend="auto").backend
    assert f"classes, {engine} on cpu" in capsys.readouterr().out


@pytest.mark.browser
def test_the_page_still_posts_feedback_to_a_keyless_service(trained, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (Debian package 'chromium'; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install -e '.[test]')")
    run, data = trained
    inbox = tmp_path / "inbox"
    app = serving.create_app(imgclf.load(run), serving.ServeSettings(inbox=str(inbox)))
    with serving.BackgroundServer(app) as url, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 800}, bypass_csp=True)
            page.goto(url)
            page.wait_for_function("document.querySelector('#model-classes').textContent.includes('3 classes')")
            page.set_input_files("#file", [str(data / "disc" / "disc_006.png")])
            page.wait_for_selector(".card .fix summary")
            page.click(".card .fix summary")
            page.select_option(".card .fix select", "stripes")
            page.click(".card .fix button[type=submit]")
            page.wait_for_function("document.querySelector('.card .fix .thanks').textContent.includes('Thanks')")
        finally:
            browser.close()
    assert len(list((inbox / "stripes").iterdir())) == 1
