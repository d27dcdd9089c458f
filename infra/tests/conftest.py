"""Fixtures of the deployment tests (infra/k8s, the Dockerfile, skaffold.yaml).

No cluster and no Docker engine run here, so the manifests are checked against what they describe: the
Kubernetes schemas, the services' own settings, apps and entry points, the Dockerfile and skaffold.yaml; and a
smoke test starts each Deployment's command from this workspace with the environment its manifest declares.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The helpers live next to this file (the lead may add "infra/tests" to pytest's pythonpath instead).
sys.path.insert(0, str(Path(__file__).parent))

from deploy_support import ALL_OVERLAYS, DEPLOYABLES, Deployable, Dockerfile, Manifests, render

from ticketing_common import tracing


@pytest.fixture(scope="session")
def deployables() -> dict[str, Deployable]:
    """Every service with an image, by name."""
    return {name: Deployable(name) for name in DEPLOYABLES}


@pytest.fixture(scope="session")
def rendered() -> dict[str, Manifests]:
    """Every overlay (and its ingress-nginx variant), rendered once per test session with ``kubectl kustomize``."""
    return {overlay: render(overlay) for overlay in ALL_OVERLAYS}


@pytest.fixture(scope="session")
def dockerfiles(deployables: dict[str, Deployable]) -> dict[str, Dockerfile]:
    """Each service's image: the one Dockerfile as skaffold builds it for that service (its build arguments)."""
    return {name: Dockerfile.parse(d.dockerfile).for_build(d.build_args()) for name, d in deployables.items()}


@pytest.fixture(autouse=True)
def tracing_off_after_each_test() -> Iterator[None]:
    """Some tests build a service's app in this process (its probe paths, its listeners) as its entry point does,
    which configures its observability: with a traced overlay's settings that turns tracing on here, towards a
    collector that is not here. Off again after each test, so that no other test finds it on."""
    yield
    tracing.shutdown_tracing()


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An empty process environment, so that settings classes read only what a test puts there."""
    for key in list(os.environ):
        monkeypatch.delenv(key)
    return monkeypatch
