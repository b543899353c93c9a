"""One local Ray cluster for the cluster tests (`ray.init(num_cpus=2)`, started once per session);
they are skipped, with the reason, when the ray extra is not installed. CI installs it."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'imgclf[ray]'")
    import logging

    # The workers start now, before any test's monkeypatched environment: give them the tests' cache.
    cache = str(tmp_path_factory.getbasetemp() / "cache")

    def no_report_after_training():  # as tests/conftest.py does in-process: 4-9 s a Ray Train fit
        import imgclf.workflows

        imgclf.workflows._report_after_training = lambda model, console: None

    ray.init(
        num_cpus=2,
        # The cluster outlives its tests in this pytest worker: Ray's log thread would print its
        # raylet's lines (CI's "disk over 95% full") into whatever later test captures stdout.
        log_to_driver=False,
        logging_level=logging.WARNING,
        logging_config=ray.LoggingConfig(log_level="ERROR"),
        runtime_env={
            "env_vars": {"IMGCLF_CACHE_DIR": cache, "IMGCLF_RAY_STORAGE": cache + "/ray_results"},
            # a nested function travels by value (cloudpickle): the workers cannot import conftest
            "worker_process_setup_hook": no_report_after_training,
        },
    )
    yield ray
    ray.shutdown()
