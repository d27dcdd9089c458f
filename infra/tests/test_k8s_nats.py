"""nats-server accepts the configuration each overlay mounts into the NATS pods."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from deploy_support import OVERLAYS, Manifests, nats_config

from ticketing_common.embedded import nats_server_binary


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nats_server_accepts_the_overlay_configuration(
    rendered: dict[str, Manifests], overlay: str, tmp_path: Path
) -> None:
    config = tmp_path / "nats.conf"
    config.write_text(nats_config(rendered[overlay]))
    env = {"POD_NAME": "nats-0", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [nats_server_binary(), "-t", "-c", str(config)], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "broken.conf"
    broken.write_text(nats_config(rendered[overlay]).replace("jetstream {", "jetstream {{"))
    refused = subprocess.run(
        [nats_server_binary(), "-t", "-c", str(broken)], capture_output=True, text=True, env=env, check=False
    )
    assert refused.returncode != 0, "the check can fail"
