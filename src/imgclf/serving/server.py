"""Running the app: in the foreground for `imgclf serve`, or in a background thread on a free
localhost port for tests, notebooks and screenshots."""
from __future__ import annotations

import socket
import threading
import time

from .app import create_app
from .settings import ServeSettings


def run_server(model, settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000,
               log_level: str = "info") -> None:
    """Serve until interrupted. Access logging is off: /metrics counts every request instead, and
    a log line per request would cost more than the answer on a busy CPU."""
    import torch
    import uvicorn

    # Without batching, one forward per core runs at once under load: one torch thread each keeps
    # the cores from being oversubscribed. A micro-batched forward is better off with all of them.
    threads = settings.threads or (None if settings.batching else 1)
    if threads:
        torch.set_num_threads(threads)
    uvicorn.run(create_app(model, settings), host=host, port=port, log_level=log_level, access_log=False)


class BackgroundServer:
    """The service on a free 127.0.0.1 port in a daemon thread; `url` is set once it accepts requests.

        with BackgroundServer(create_app(model)) as url:
            httpx.get(f"{url}/health")
    """

    def __init__(self, app):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
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
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
