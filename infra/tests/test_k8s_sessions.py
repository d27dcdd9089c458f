"""Session keys in the cluster: auth alone holds the private key ring (the secret `auth-session-keys`, mounted as a
folder in its pod, both containers), every other service fetches auth's public JWK Set (JWKS_URL), and the shared
HS256 key of old (JWT_KEY, the secret `jwt-secret`) is gone from everything deployed."""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from deploy_support import (
    ALL_OVERLAYS,
    K8S,
    OVERLAYS,
    REPO,
    Deployable,
    Manifests,
    container_env,
    documented_secrets,
)
from starlette.routing import Match

from ticketing_common.config import ServiceSettings
from ticketing_common.keys import read_key_ring
from ticketing_common.routes import route_for

SECRET = "auth-session-keys"
KEY = "session-keys.json"
# What a file of a secret volume gets when neither the item nor the volume says (the API's default, 0644).
DEFAULT_SECRET_FILE_MODE = 0o644


def _label(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def _session_key_volumes(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in pod.get("volumes", []) if v.get("secret", {}).get("secretName") == SECRET]


# -- auth alone ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", ALL_OVERLAYS)
def test_only_auth_holds_the_session_keys(rendered: dict[str, Manifests], overlay: str) -> None:
    """No other object of the overlay names the secret or the key file: no other workload mounts it, reads a key of
    it, or is told where auth keeps it; auth reads it only through its volume."""
    manifests = rendered[overlay]
    auth = manifests.get("Deployment", "auth")
    for obj in manifests.objects:
        if obj is auth:
            continue
        text = yaml.safe_dump(obj)
        for secret_word in (SECRET, "SESSION_KEY_FILE", KEY):
            assert secret_word not in text, f"{overlay}: {_label(obj)} names {secret_word}"
    pod = auth["spec"]["template"]["spec"]
    for container in manifests.containers(auth):
        for var in container.get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef", {})
            assert ref.get("name") != SECRET, "a private key in an environment variable leaks into every child"
        assert all("secretRef" not in source for source in container.get("envFrom", []))
    assert len(_session_key_volumes(pod)) == 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_auth_reads_its_session_keys_from_the_mounted_secret_in_both_containers(
    rendered: dict[str, Manifests], overlay: str
) -> None:
    """The migrations load the same settings as the service, so both containers mount the key ring and name it in
    SESSION_KEY_FILE; a folder mount (never subPath, which would not see a rotation), read-only, of exactly that
    key, never optional (no secret, no pod)."""
    manifests = rendered[overlay]
    auth = manifests.get("Deployment", "auth")
    pod = auth["spec"]["template"]["spec"]
    (volume,) = _session_key_volumes(pod)
    source = volume["secret"]
    assert source["items"] == [{"key": KEY, "path": KEY}]
    assert source.get("defaultMode") == 0o400, "the owner may read, nobody else (the kubelet adds fsGroup's read)"
    assert not source.get("optional")
    containers = manifests.containers(auth)
    assert [c["name"] for c in containers] == ["migrate", "auth"]
    for container in containers:
        mounts = [m for m in container.get("volumeMounts", []) if m["name"] == volume["name"]]
        assert len(mounts) == 1, f"{container['name']} does not mount {SECRET}"
        (mount,) = mounts
        assert mount.get("readOnly") is True, container["name"]
        assert "subPath" not in mount, "a subPath mount never sees a rotation"
        assert "subPathExpr" not in mount, "a subPath mount never sees a rotation"
        env = container_env(manifests, container)
        assert env.values["SESSION_KEY_FILE"] == f"{mount['mountPath'].rstrip('/')}/{KEY}", container["name"]
        # ...which is the file auth accepts (the test ring stands in for the secret, as `ticketing keys rotate`
        # makes it).
        assert read_key_ring(Path(env.on_this_machine()["SESSION_KEY_FILE"])).keys


def _can(mode: int, owner: tuple[int, int], uid: int, gids: set[int], bit: int) -> bool:
    """Whether a process (uid, gids) has the permission ``bit`` (4 read, 2 write) on a file (mode, (uid, gid)), as
    the kernel decides for an unprivileged process: the owner's bits, else the group's, else the others'."""
    if uid == owner[0]:
        return bool(mode >> 6 & bit)
    if owner[1] in gids:
        return bool(mode >> 3 & bit)
    return bool(mode & bit)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_session_key_file_is_readable_by_the_service_user_and_nobody_else(
    rendered: dict[str, Manifests], overlay: str
) -> None:
    """The kubelet writes a secret volume's files as root, with the item's mode, else the volume's defaultMode; with
    the pod's fsGroup it gives them to that group and adds read for it (pkg/volume/volume_linux.go, SetVolumeOwnership,
    read-only volumes: 0440). The containers run as runAsUser with runAsGroup, fsGroup and supplementalGroups."""
    manifests = rendered[overlay]
    auth = manifests.get("Deployment", "auth")
    pod = auth["spec"]["template"]["spec"]
    (volume,) = _session_key_volumes(pod)
    (item,) = volume["secret"]["items"]
    pod_security = pod.get("securityContext", {})
    fs_group = pod_security.get("fsGroup")
    mode = item.get("mode", volume["secret"].get("defaultMode", DEFAULT_SECRET_FILE_MODE))
    owner = (0, 0)
    if fs_group is not None:
        mode |= 0o440
        owner = (0, fs_group)
    for container in manifests.containers(auth):
        security = {**pod_security, **container.get("securityContext", {})}
        uid = security["runAsUser"]
        assert uid != 0
        assert security["runAsNonRoot"] is True
        gids = {security.get("runAsGroup", 0), *pod_security.get("supplementalGroups", [])}
        gids |= {fs_group} if fs_group is not None else set()
        assert _can(mode, owner, uid, gids, 4), f"{container['name']} (uid {uid}) cannot read {oct(mode)} {owner}"
        assert not _can(mode, owner, uid, gids, 2), f"{container['name']} could write its key ring"
    assert mode & 0o007 == 0, f"every user of the node's container could read the keys: {oct(mode)}"
    assert mode & 0o222 == 0, f"the key ring is writable: {oct(mode)}"


# -- everyone else: the public JWK Set ----------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_other_service_fetches_auths_jwk_set_inside_the_cluster(
    rendered: dict[str, Manifests], deployables: dict[str, Deployable], overlay: str
) -> None:
    """Each container of a service that checks sessions (its settings are ServiceSettings) and does not sign them
    is given JWKS_URL, migrations included (the same settings refuse to load without it): auth's Service, on the
    port that reaches auth's container, at the path of the table's route to auth, which auth serves (next test)."""
    manifests = rendered[overlay]
    auth = manifests.get("Deployment", "auth")
    auth_container = auth["spec"]["template"]["spec"]["containers"][0]
    checked = []
    for name, deployable in deployables.items():
        if not deployable.present:
            continue
        settings_cls = deployable.settings_cls
        if not issubclass(settings_cls, ServiceSettings) or settings_cls.signs_sessions:
            continue  # the web client checks no session itself; auth signs them
        checked.append(name)
        for container in manifests.containers(manifests.get("Deployment", name)):
            where = f"{overlay}: {name}/{container['name']}"
            env = container_env(manifests, container).values
            assert "JWKS_URL" in env, f"{where} does not know where auth's JWK Set is"
            url = urlsplit(env["JWKS_URL"])
            assert url.scheme == "http", where
            assert url.hostname, where
            assert not url.query, where
            service = manifests.get("Service", url.hostname)
            labels = auth["spec"]["template"]["metadata"]["labels"]
            assert service["spec"]["selector"].items() <= labels.items(), f"{url.hostname} does not select auth"
            (port,) = [p for p in service["spec"]["ports"] if p["port"] == (url.port or 80)]
            target = port["targetPort"]
            container_ports = {p.get("name"): p["containerPort"] for p in auth_container["ports"]}
            assert container_ports.get(target, target) in container_ports.values(), f"{where}: not auth's port"
            route = route_for(url.path)
            assert route is not None, where
            assert (route.service, route.prefix) == ("auth", url.path), f"{where}: not the table's route to auth"
    assert checked, "no service verifies sessions with auth's public keys?"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_auth_serves_the_jwk_set_at_jwks_url(
    rendered: dict[str, Manifests],
    deployables: dict[str, Deployable],
    overlay: str,
    clean_environ: pytest.MonkeyPatch,
) -> None:
    """The path JWKS_URL names is a route of the app auth's entry point builds (from its manifest's settings)."""
    deployables["auth"].require_present()
    manifests = rendered[overlay]
    container = manifests.get("Deployment", "auth")["spec"]["template"]["spec"]["containers"][0]
    for key, value in container_env(manifests, container).on_this_machine().items():
        clean_environ.setenv(key, value)
    app = deployables["auth"].create_app(deployables["auth"].settings_cls())  # built, not started
    shared = [c for c in manifests.of_kind("ConfigMap") if c["metadata"]["name"].startswith("ticketing-config")]
    assert len(shared) == 1
    path = urlsplit(shared[0]["data"]["JWKS_URL"]).path
    # As the app's router picks a route for a request (included routers too): one answers GET on exactly that path.
    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": [], "query_string": b""}
    assert any(route.matches(scope)[0] == Match.FULL for route in app.router.routes), f"auth serves no GET {path}"


# -- JWT_KEY is gone ----------------------------------------------------------------------------------------------

OLD_KEY = re.compile(r"JWT_KEY|jwt-secret")


@pytest.mark.parametrize("overlay", ALL_OVERLAYS)
def test_no_workload_references_the_old_shared_key(rendered: dict[str, Manifests], overlay: str) -> None:
    for obj in rendered[overlay].objects:
        assert not OLD_KEY.search(yaml.safe_dump(obj)), f"{overlay}: {_label(obj)} still names JWT_KEY or jwt-secret"


def test_the_deployment_files_and_their_documentation_forget_the_old_shared_key() -> None:
    files = [*sorted(p for p in K8S.rglob("*") if p.is_file()), REPO / "skaffold.yaml", REPO / "infra" / "README.md"]
    found = [str(f.relative_to(REPO)) for f in files if OLD_KEY.search(f.read_text(errors="replace"))]
    assert not found, f"JWT_KEY or jwt-secret still in {found}"
    assert "jwt-secret" not in documented_secrets()


# -- the documented commands ----------------------------------------------------------------------------------------


def test_the_documented_key_commands_make_and_rotate_a_ring_auth_accepts(
    tmp_path: Path, clean_environ: pytest.MonkeyPatch, deployables: dict[str, Deployable]
) -> None:
    """infra/README.md creates the secret from `ticketing keys rotate --file F` and rotates by running it again on
    the secret's current file: the first makes a ring auth starts with, the second keeps the previous key beside
    the new one, which signs."""
    readme = (REPO / "infra" / "README.md").read_text()
    assert "uv run ticketing keys rotate --file ./session-keys.json" in readme
    assert f"--from-file={KEY}=" in readme
    assert "uv run ticketing keys rotate --file ring.json" in readme
    if importlib.util.find_spec("ticketing_launcher") is None:
        pytest.skip("the launcher (tools/launcher, the `ticketing` command) is not installed")
    launcher = importlib.import_module("ticketing_launcher.__main__")
    deployables["auth"].require_present()
    ring_file = tmp_path / KEY
    for run in (1, 2):
        with pytest.raises(SystemExit) as exit_info:
            launcher.main(["keys", "rotate", "--file", str(ring_file)])
        assert exit_info.value.code == 0, f"`ticketing keys rotate` #{run} failed"
        # What `kubectl create secret --from-file` stores and the kubelet writes back is these bytes.
        json.loads(ring_file.read_text())
        clean_environ.setenv("SESSION_KEY_FILE", str(ring_file))
        deployables["auth"].settings_cls()
    ring = read_key_ring(ring_file)
    assert len(ring.keys) == 2, "the previous key still verifies the tokens it signed"
    jwks = ring.public_jwks(token_seconds=24 * 3600)
    assert [k["kid"] for k in jwks["keys"]] == [k.kid for k in ring.keys]
    assert all("d" not in k for k in jwks["keys"]), "the JWK Set is public keys only"
