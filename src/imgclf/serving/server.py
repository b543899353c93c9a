"""Running the app: in the foreground for `imgclf serve`, or in a background thread on a free
localhost port for tests, notebooks and screenshots."""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time
from pathlib import Path

from imgclf.core.errors import UserError
from imgclf.serving.app import create_app
from imgclf.serving.slow_clients import protocol_class
from imgclf.settings.serve import PORT, ServeJobSettings, ServeSettings
from imgclf.store.runs import find_run

WILDCARD_HOSTS = ("0.0.0.0", "::", "")
# On shutdown, connections still open after this long are closed: a client mid-upload, a scan's
# answer. Running scans stop between batches as soon as the shutdown starts (app.state.cancel).
GRACEFUL_S = 3


def check_port(port) -> int:
    """The port, or a one-line UserError: its declared rule (settings.serve.PORT)."""
    return PORT.check("--port", port)


def check_bindable(host: str, port: int) -> socket.socket:
    """HOST:PORT bound, before the model loads, or a one-line UserError when it cannot be: uvicorn
    says so only after loading the model and starting up, among its INFO lines, and exits 3. Bound
    as uvicorn binds (SO_REUSEADDR), so a port in TIME_WAIT after a restart is not refused. The
    socket is the one uvicorn then serves on: a second `imgclf serve` started while this one loads
    its model is refused at once, not after its own load."""
    import errno

    check_port(port)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise UserError(f"--host {host}: not a name or address this machine knows ({e.strerror})") from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
        sock.listen(2048)  # uvicorn's backlog; from here a second server's bind fails
        return sock
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise UserError(
                f"port {port} on {host} is already in use (another imgclf serve?): stop that process "
                f"or choose another port, e.g. --port {port + 1 if port < 65535 else 8000}"
            ) from None
        if e.errno == errno.EACCES:
            raise UserError(
                f"--port {port}: not allowed here (ports below 1024 need root); use e.g. --port 8000"
            ) from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise UserError(
                f"--host {host}: not an address of this machine; use 127.0.0.1 (this machine only) "
                "or 0.0.0.0 (every interface)"
            ) from None
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror}") from None


def served_hosts(settings: ServeSettings, host: str) -> ServeSettings:
    """The settings with the bound host's names added to the Host allow-list: the address itself,
    or for every interface (0.0.0.0) this machine's names, as LAN clients address it (its IP
    addresses pass anyway)."""
    name = socket.gethostname()
    names = [name, f"{name}.local"] if host in WILDCARD_HOSTS else [host]
    return dataclasses.replace(settings, allowed_hosts=(*settings.allowed_hosts, *names))


def uvicorn_options(app) -> dict:
    """uvicorn's options for one of our apps: its slow-client deadline and connection limit."""
    settings = getattr(app.state, "settings", None) or ServeSettings()
    return {
        "access_log": False,
        "http": protocol_class(settings.read_timeout_s),
        "limit_concurrency": settings.max_connections,
        "timeout_graceful_shutdown": GRACEFUL_S,
    }


def stoppable_server(config):
    """A uvicorn Server that, on SIGTERM or Ctrl-C, first tells the app's running work to stop
    (app.state.cancel: a scan ends within a batch), then shuts down as uvicorn does. Without it a
    scan in a worker thread ran to its end, minutes, and only a second signal stopped the service."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            cancel = getattr(config.app.state, "cancel", None)
            if cancel is not None:
                cancel.set()
            super().handle_exit(sig, frame)

    return Server(config)


def run_server(
    model,
    settings: ServeSettings,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    sock: socket.socket | None = None,
) -> None:
    """Serve until interrupted. Access logging is off: /metrics counts every request instead, and
    a log line per request would cost more than the answer on a busy CPU."""
    import uvicorn

    from imgclf.core.device import device_type
    from imgclf.serving.holder import ModelHolder

    check_port(port)
    served = model.model if isinstance(model, ModelHolder) else model
    limit_threads(settings, cpu=device_type(served.device_name) == "cpu")
    app = create_app(model, served_hosts(settings, host))
    server = stoppable_server(uvicorn.Config(app, host=host, port=port, log_level=log_level, **uvicorn_options(app)))
    server.run(sockets=[sock] if sock is not None else None)  # `sock`: check_bindable's, held since before the load


def limit_threads(settings: ServeSettings, cpu: bool) -> None:
    """The threads of one forward pass (serving.batching.forward_threads), set before the model loads
    where they can be: an ONNX Runtime session takes its threads when it is opened."""
    from imgclf.core.device import set_threads
    from imgclf.serving.batching import forward_threads

    threads = forward_threads(settings.threads, settings.batching, cpu)
    if threads:
        set_threads(threads)


class BackgroundServer:
    """The service on a free 127.0.0.1 port in a daemon thread; `url` is set once it accepts requests.

    with BackgroundServer(create_app(model)) as url:
        httpx.get(f"{url}/health")
    """

    def __init__(self, app):
        import uvicorn

        self.app = app
        self.server = stoppable_server(uvicorn.Config(app, log_level="warning", **uvicorn_options(app)))
        # Binding the socket ourselves (port 0) gives a free port with no race against other processes.
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the background server did not start")
            time.sleep(0.02)
        return self.url

    def __exit__(self, *exc) -> None:
        cancel = getattr(self.app.state, "cancel", None)
        if cancel is not None:
            cancel.set()
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def serve_run(
    run,
    *,
    registry,
    alias: str,
    host: str,
    port: int,
    backend: str,
    device: str,
    tta,
    console,
    log_level: str,
    **settings,
) -> None:
    """See imgclf.serve: load RUN (or follow REGISTRY's ALIAS), print where it serves, serve until interrupted."""

    from imgclf.core.device import on_cpu
    from imgclf.core.errors import from_settings
    from imgclf.detection.classifier import is_detector_run, presence_model
    from imgclf.inference.load import load_model as load
    from imgclf.store.inbox import default_inbox
    from imgclf.store.runs import names_pretrained_detector

    # Checked as declared, before anything loads; `port` is checked again where it is bound
    ServeJobSettings(registry=registry, alias=alias, host=host, port=port, backend=backend, device=device, tta=tta)
    if run is not None and registry is not None:
        raise UserError("give either RUN (a run folder) or --registry DIR (serve and follow its --alias), not both")
    if run is not None and names_pretrained_detector(run):
        if settings.get("detector") not in (None, "person", str(run)):
            raise UserError(f"{run} is the pretrained detector and --detector names another: give one of them")
        run, settings["detector"] = None, str(run)  # `imgclf serve person`: as `imgclf serve` with no run
    detecting = registry is None and (run is None or is_detector_run(run))
    if detecting:  # no model of the user's: the detector answers /predict as well as /scan
        settings["detector"] = _served_detector(run, settings.get("detector"), backend, tta)
    cors = settings.pop("cors", None) or ()
    ref = Path(run).expanduser() if run is not None else None
    # REGISTRY/ALIAS (or REGISTRY/3) serves that version as it is now, not followed: the version is recorded.
    pinned = ref is not None and not ref.exists() and (ref.parent / "versions").is_dir()
    settings["inbox"] = str(
        settings.get("inbox")
        or default_inbox(
            registry or (ref.parent if pinned else None),
            None if registry or pinned else run if detecting else find_run(run),  # PROJECT/runs/x: PROJECT/inbox
        )
    )
    config = from_settings(
        ServeSettings, {**settings, "cors": (cors,) if isinstance(cors, str) else tuple(cors)}, "serve setting"
    )
    config.check_folders()  # before the model loads: a mistake is told at once
    sock = check_bindable(host, port)  # held from now on: a second service is refused while this one loads
    try:
        limit_threads(config, cpu=on_cpu(device))  # before the model loads
        if detecting:  # /scan's detector, shared: one network in memory, where it runs on /scan's device
            from imgclf.serving.scan_routes import loaded_detector

            shared = loaded_detector(config.detector, config.detector_backend) if device == "auto" else None
            served = model = presence_model(config.detector, device, config.detector_backend, loaded=shared)
            following = ""
        else:
            served, model, following = _loaded(
                run, registry, alias, pinned, lambda path: load(path, device, tta, backend)
            )
        _say_where(console, model, following, run, detecting, config, f"{host}:{port}")
        run_server(served, config, host, port, log_level=log_level, sock=sock)
    finally:
        sock.close()


def _say_where(console, model, following: str, run, detecting: bool, config: ServeSettings, address: str) -> None:
    """The start-up lines: what serves, on which engine, how requests are batched, where, and where
    feedback and the prediction log go."""
    from rich.markup import escape  # the run's name and the folders are the user's text

    mode = (
        f"micro-batches of up to {config.max_batch} (max wait {config.max_wait_ms:g} ms)"
        if config.batching
        else "one forward pass per request (no batching)"
    )
    what = (
        f"the detector {model.name} (is '{model.classes[1]}' present: POST /predict, where: POST /scan"
        if detecting
        else f"{model.path.name + following} ({len(model.classes)} classes"
    )
    console.print(
        f"serving {escape(what)}, {getattr(model, 'backend', 'torch')} on {model.device_name}, "
        f"{mode}) at http://{address}/  API key {'required' if config.api_key else 'not set'}"
    )
    if detecting and run is None:
        console.print("no run folder given: the pretrained person detector answers; your own model: imgclf serve RUN")
    console.print(
        f"feedback (POST /feedback) goes to the inbox {escape(os.path.abspath(config.inbox))}"
        + (f"; predictions are logged to {escape(str(config.log_predictions))}" if config.log_predictions else "")
    )


def _loaded(run, registry, alias: str, pinned: bool, load) -> tuple:
    """(what serves: the model or a holder that follows the registry, the model, what the start-up line adds)."""
    if registry is not None:
        from imgclf.serving.hotswap import holder_for_registry

        served = holder_for_registry(registry, alias, load)
        return served, served.model, f", version {served.version} ({alias} of {registry}, swapped on promote)"
    model = load(run)
    if not pinned:
        return model, model, ""
    from imgclf.serving.holder import ModelHolder
    from imgclf.store.registry import version_number

    ref = Path(run).expanduser()  # REGISTRY/ALIAS: that version, as it is now
    served = ModelHolder(model, version=version_number(ref.parent, ref.name))
    return served, model, f", version {served.version} of {ref.parent}"


def _served_detector(run, detector: str | None, backend: str, tta) -> str:
    """The detector a service with no classifier run serves: RUN when it is a detector run, else
    --detector (default the pretrained person detector). The run's own options are refused in one line."""
    if backend != "auto" or tta is not None:
        flag = "--backend" if backend != "auto" else "--tta"
        raise UserError(
            f"{flag} is an option of a classifier run; the detector's engine is --detector-backend, and it "
            "already looks at each photo's mirror image"
        )
    if run is None:
        return detector or "person"
    if detector not in (None, "person") and Path(detector).expanduser().resolve() != Path(run).expanduser().resolve():
        raise UserError(f"{run} is a detector run and --detector names another ({detector}): give one of them")
    return str(run)
