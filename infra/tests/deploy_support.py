"""What the deployment tests share: the workspace's deployables, the rendered overlays, the Dockerfile,
skaffold.yaml, and how Kubernetes would build a container's command and environment from them."""

from __future__ import annotations

import atexit
import importlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "infra" / "k8s"
# gke with the optional component infra/k8s/components/keda-lag-scaling: the services with listeners scale on their
# consumers' lag through KEDA's ScaledObjects instead of the CPU autoscalers. Otherwise gke (the Gateway API entry
# point): every check of the overlays applies to it, the smoke test included.
KEDA_OVERLAYS = ("gke-keda",)
OVERLAYS = ("dev", "gke", *KEDA_OVERLAYS)
# The same overlays behind ingress-nginx instead of the Gateway API (the optional component
# infra/k8s/components/ingress-nginx): rendered and validated too, and their Ingress checked against the routes.
INGRESS_OVERLAYS = ("dev-ingress-nginx", "gke-ingress-nginx")
ALL_OVERLAYS = OVERLAYS + INGRESS_OVERLAYS
# The overlay each variant is built on (its resources), whose environment it shares: a local cluster or GKE.
BASE_OVERLAY = {"dev-ingress-nginx": "dev", "gke-ingress-nginx": "gke", "gke-keda": "gke"}


def environment(overlay: str) -> str:
    """Where an overlay runs: ``dev`` (a local cluster) or ``gke``, for a variant that of the overlay it is built on."""
    return BASE_OVERLAY.get(overlay, overlay)


def components(overlay: str) -> set[str]:
    """The optional components (``infra/k8s/components/<name>``) an overlay lists, in its own kustomization or in that
    of an overlay it is built on (its resources)."""
    folder = K8S / "overlays" / overlay
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    listed = {(folder / path).resolve() for path in kustomization.get("components", [])}
    found = {path.name for path in listed if path.parent == (K8S / "components").resolve()}
    for resource in kustomization.get("resources", []):
        path = (folder / resource).resolve()
        if path.parent == (K8S / "overlays").resolve() and path.is_dir():
            found |= components(path.name)
    return found


# The overlays whose processes export traces: those with the component infra/k8s/components/tracing.
TRACED_OVERLAYS = tuple(overlay for overlay in ALL_OVERLAYS if "tracing" in components(overlay))


# The Kubernetes version whose schemas the manifests must satisfy (GKE's regular channel and recent kind both
# run it or newer). Pinned so that a schema update never changes the verdict silently.
KUBERNETES_VERSION = "1.32"
# The one Dockerfile of every service's image; the build argument SERVICE names the service.
DOCKERFILE = REPO / "Dockerfile"
# What the image's WORKDIR holds: the workspace layout (see the Dockerfile); /app/.venv is its virtualenv.
IMAGE_WORKDIR = "/app"
IMAGE_VENV = "/app/.venv"
# The python images' PATH, which the Dockerfile extends.
BASE_IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _built_services() -> tuple[str, ...]:
    config = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    artifacts = config["build"]["artifacts"]
    return tuple(sorted(str(a["docker"].get("buildArgs", {}).get("SERVICE", "")) for a in artifacts))


# Deployables: the services that have an image, those skaffold builds (--build-arg SERVICE=<name>). The gateway has
# none: in the cluster the Gateway API's Gateway (or the optional Ingress) replaces it.
DEPLOYABLES = _built_services()


# -- the workspace ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deployable:
    """A service of the workspace that has an image, and what the tests need to know about its code."""

    name: str

    @property
    def package(self) -> str:
        return f"ticketing_{self.name}"

    @property
    def distribution(self) -> str:
        return f"ticketing-{self.name}"

    @property
    def image(self) -> str:
        """The image name the manifests and skaffold.yaml use (before an overlay points it at a registry)."""
        return f"ticketing-{self.name}"

    @property
    def folder(self) -> Path:
        return REPO / "services" / self.name

    @property
    def dockerfile(self) -> Path:
        return DOCKERFILE

    def build_args(self, profile: str | None = None) -> dict[str, str]:
        """The build arguments skaffold passes when it builds this image (``docker build --build-arg``)."""
        for artifact in skaffold_config(profile)["build"]["artifacts"]:
            if artifact["image"].rpartition("/")[2] == self.image:
                return {key: str(value) for key, value in artifact["docker"].get("buildArgs", {}).items()}
        raise AssertionError(f"skaffold.yaml builds no {self.image}")

    @property
    def has_migrations(self) -> bool:
        return (self.folder / "migrations" / "env.py").exists()

    @cached_property
    def scripts(self) -> dict[str, str]:
        """Console scripts of the package: name -> ``module:function``."""
        project = tomllib.loads((self.folder / "pyproject.toml").read_text())["project"]
        scripts: dict[str, str] = project.get("scripts", {})
        return scripts

    @property
    def present(self) -> bool:
        """Whether its code exists yet (the web client is being built in parallel): its entry point imports."""
        target = self.scripts.get(self.distribution)
        if target is None:
            return False
        return importlib.util.find_spec(target.split(":")[0]) is not None

    def require_present(self) -> None:
        if not self.present:
            pytest.skip(
                f"services/{self.name} has no code yet ({self.scripts.get(self.distribution, 'no entry point')} "
                "does not import): its manifests are only checked statically until it lands"
            )

    @cached_property
    def settings_cls(self) -> type[Any]:
        """The service's pydantic-settings class (``ticketing_<name>.config.Settings``)."""
        settings_cls: type[Any] = importlib.import_module(f"{self.package}.config").Settings
        return settings_cls

    def create_app(self, settings: Any) -> Any:
        """The service's app, as its entry point builds it (``ticketing_<name>.main.create_app``)."""
        return importlib.import_module(f"{self.package}.main").create_app(settings)

    def durable_consumers(self, settings: Any) -> list[str]:
        """The durable JetStream consumers the service's replicas share, with these settings: one per listener,
        named as the event runtime's runner names it (``ListenerRunner.consumer``: ``durable_name`` of the
        service's name and the listener's subject).

        The listeners are those ``create_app`` hands the shared app factory (``ticketing_common.app.create_app``,
        which each service's main module imports as ``create_service_app``), built as the running app builds them,
        from an app whose ``state`` holds the settings and stand-ins for the clients a listener keeps."""
        from types import SimpleNamespace
        from unittest.mock import MagicMock

        from ticketing_common.events.listener import ListenerRunner

        main = importlib.import_module(f"{self.package}.main")
        factory = getattr(main, "create_service_app", None)
        if factory is None:
            assert importlib.util.find_spec(f"{self.package}.listeners") is None, (
                f"{self.name} has listeners but its main module does not build its app with create_service_app: "
                "say here how to find them"
            )
            return []
        handed: dict[str, Any] = {}

        def record(*args: Any, **kwargs: Any) -> Any:
            handed.update(kwargs)
            return factory(*args, **kwargs)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(main, "create_service_app", record)
            main.create_app(settings)
        build = handed.get("listeners")
        if build is None:
            return []

        class RunningState:
            """``app.state`` of the running app: its settings, and a stand-in for anything else."""

            def __init__(self) -> None:
                self.settings = settings

            def __getattr__(self, name: str) -> Any:
                return MagicMock(name=f"app.state.{name}")

        listeners = build(SimpleNamespace(state=RunningState()))
        return [
            ListenerRunner(
                listener, service=settings.service_name, js=MagicMock(), stream=settings.nats_stream, db=MagicMock()
            ).consumer
            for listener in listeners
        ]


# -- the manifests ---------------------------------------------------------------------------------------------


def kubectl_or_skip() -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the overlays cannot be rendered (install kubectl 1.27+ to run this)")
    return kubectl


@dataclass
class Manifests:
    """The objects one overlay renders to."""

    overlay: str
    objects: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        for obj in self.of_kind(kind):
            if obj["metadata"]["name"] == name:
                return obj
        raise AssertionError(f"{self.overlay}: no {kind} named {name!r}")

    def find(self, kind: str, name: str) -> dict[str, Any] | None:
        return next((o for o in self.of_kind(kind) if o["metadata"]["name"] == name), None)

    @property
    def workloads(self) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job")]

    def containers(self, workload: dict[str, Any], *, init: bool = True) -> list[dict[str, Any]]:
        spec = workload["spec"]["template"]["spec"]
        return [*(spec.get("initContainers", []) if init else []), *spec["containers"]]

    def pod_of(self, container: dict[str, Any]) -> dict[str, Any] | None:
        """The pod spec (``spec.template.spec``) of the workload this very container belongs to."""
        for workload in self.workloads:
            if any(c is container for c in self.containers(workload)):
                spec: dict[str, Any] = workload["spec"]["template"]["spec"]
                return spec
        return None

    def generated_secret(self, name: str) -> dict[str, str] | None:
        """The data of a secret an operator of this overlay generates (``<cluster>-app`` of a CloudNativePG
        Cluster), as the operator would fill it; None for any other name."""
        for cluster in self.of_kind("Cluster"):
            if name == f"{cluster['metadata']['name']}-app":
                return cnpg_app_secret(cluster)
        return None

    @property
    def autoscalers(self) -> list[dict[str, Any]]:
        """The HorizontalPodAutoscalers the cluster runs: the overlay's, and the one KEDA makes from each
        ScaledObject (:func:`keda_autoscaler`)."""
        return [*self.of_kind("HorizontalPodAutoscaler"), *map(keda_autoscaler, self.of_kind("ScaledObject"))]

    def autoscaler(self, kind: str, name: str) -> dict[str, Any] | None:
        """The HorizontalPodAutoscaler that scales this workload, if any (KEDA's, for a ScaledObject)."""
        for hpa in self.autoscalers:
            target = hpa["spec"]["scaleTargetRef"]
            if target["kind"] == kind and target["name"] == name:
                return hpa
        return None

    def min_replicas(self, workload: dict[str, Any]) -> int:
        """The fewest replicas a workload runs: its autoscaler's minimum, else its own count (1 when unset)."""
        hpa = self.autoscaler(workload["kind"], workload["metadata"]["name"])
        count: int = hpa["spec"].get("minReplicas", 1) if hpa else workload["spec"].get("replicas", 1)
        return count

    def config_map(self, name: str) -> dict[str, str]:
        data: dict[str, str] = self.get("ConfigMap", name).get("data", {})
        return data

    def services_selecting(self, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        return [
            s
            for s in self.of_kind("Service")
            if s["spec"].get("selector") and all(labels.get(k) == v for k, v in s["spec"]["selector"].items())
        ]


# KEDA (the version whose ScaledObject CRD infra/schemas vendors): what its operator puts in the autoscaler it makes.
KEDA_DEFAULT_MIN_REPLICAS = 1
KEDA_DEFAULT_MAX_REPLICAS = 100


def keda_autoscaler(scaled_object: dict[str, Any]) -> dict[str, Any]:
    """The HorizontalPodAutoscaler KEDA's operator makes from a ScaledObject, as v2.20.2 does
    (controllers/keda/hpa.go, newHPAForScaledObject; apis/keda/v1alpha1/scaledobject_types.go,
    GetHPAMinReplicas/GetHPAMaxReplicas): named by ``advanced.horizontalPodAutoscalerConfig.name`` (else
    ``keda-hpa-<name>``), owned by the ScaledObject, its bounds (a minimum below 1 is 1) and behaviour; a
    ``Resource`` metric per cpu or memory trigger (pkg/scalers/cpu_memory_scaler.go) and an ``External`` metric
    per other trigger, which KEDA's metrics server answers (here only nats-jetstream's is modelled: the consumer's
    lag, an ``AverageValue`` of ``lagThreshold``, pkg/scalers/nats_jetstream_scaler.go), External before Resource."""
    name = scaled_object["metadata"]["name"]
    spec = scaled_object["spec"]
    config = spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {})
    target = spec["scaleTargetRef"]
    metrics = []
    for index, trigger in enumerate(spec["triggers"]):
        kind, metadata = trigger["type"], trigger["metadata"]
        metric_type = trigger.get("metricType")
        if kind in ("cpu", "memory"):
            assert metric_type in ("Utilization", "AverageValue"), f"{name}: KEDA refuses a {kind} trigger without it"
            goal = (
                {"type": "Utilization", "averageUtilization": int(metadata["value"])}
                if metric_type == "Utilization"
                else {"type": "AverageValue", "averageValue": metadata["value"]}
            )
            metrics.append({"type": "Resource", "resource": {"name": kind, "target": goal}})
        elif kind == "nats-jetstream":
            metric_type = metric_type or "AverageValue"
            value = metadata.get("lagThreshold", "10")
            goal = {"type": metric_type, ("value" if metric_type == "Value" else "averageValue"): value}
            metric = {"name": f"s{index}-nats-jetstream-{metadata['stream']}".lower()}
            metrics.append({"type": "External", "external": {"metric": metric, "target": goal}})
        else:
            raise AssertionError(f"{name}: no model of KEDA's {kind} trigger here (deploy_support.keda_autoscaler)")
    metrics.sort(key=lambda metric: str(metric["type"]))
    hpa_spec: dict[str, Any] = {
        "scaleTargetRef": {
            "apiVersion": target.get("apiVersion", "apps/v1"),
            "kind": target.get("kind", "Deployment"),
            "name": target["name"],
        },
        "minReplicas": max(spec.get("minReplicaCount", 0), KEDA_DEFAULT_MIN_REPLICAS),
        "maxReplicas": spec.get("maxReplicaCount", KEDA_DEFAULT_MAX_REPLICAS),
        "metrics": metrics,
    }
    if "behavior" in config:
        hpa_spec["behavior"] = config["behavior"]
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": config.get("name") or f"keda-hpa-{name}",
            "ownerReferences": [{"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": name}],
        },
        "spec": hpa_spec,
    }


def render(overlay: str) -> Manifests:
    kubectl = kubectl_or_skip()
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize {overlay} failed:\n{result.stderr}"
    objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return Manifests(overlay, objects)


def nats_config(manifests: Manifests) -> str:
    """The nats.conf of the overlay's NATS StatefulSet (from the ConfigMap its `config` volume mounts)."""
    nats = manifests.get("StatefulSet", "nats")
    (volume,) = [v for v in nats["spec"]["template"]["spec"]["volumes"] if v["name"] == "config"]
    text: str = manifests.config_map(volume["configMap"]["name"])["nats.conf"]
    return text


# -- secrets: created by hand, documented in infra/README.md, or generated by an operator ------------------------

SECRET_COMMAND = re.compile(r"kubectl create secret (?P<type>generic|tls) (?P<name>[a-z0-9-]+)(?P<rest>[^\n`|]*)")
SECRET_LITERAL = re.compile(r"--from-literal=(?P<key>[A-Z0-9_]+)=")
# --from-file=<key>=<path>, or --from-file=<path> (the key is the file's name)
SECRET_FILE = re.compile(r"--from-file=(?P<spec>\S+)")
TLS_KEYS = {"tls.crt", "tls.key"}


def documented_secrets() -> dict[str, set[str]]:
    """Secret name -> keys, as infra/README.md tells people to create them (``kubectl create secret generic`` with
    ``--from-literal`` or ``--from-file``, or ``kubectl create secret tls``, whose keys are tls.crt and tls.key)."""
    text = (REPO / "infra" / "README.md").read_text()
    secrets: dict[str, set[str]] = {}
    for match in SECRET_COMMAND.finditer(text):
        if match["type"] == "tls":
            keys = TLS_KEYS
        else:
            keys = {m["key"] for m in SECRET_LITERAL.finditer(match["rest"])}
            for m in SECRET_FILE.finditer(match["rest"]):
                key, has_key, path = m["spec"].partition("=")
                keys.add(key if has_key else Path(path or key).name)
        secrets.setdefault(match["name"], set()).update(keys)
    return secrets


# What the tests' CloudNativePG "generates": the password of every application role, and the namespace the
# overlays are deployed to (they name none: skaffold's, `default` unless told otherwise).
TEST_CNPG_PASSWORD = "k8s-smoke-test-cnpg-password"
CNPG_NAMESPACE = "default"
# Where the overlays are deployed, for the names that need it (KEDA, in its own namespace, reaches NATS there).
NAMESPACE = CNPG_NAMESPACE


def cnpg_app_secret(cluster: dict[str, Any], *, namespace: str = CNPG_NAMESPACE) -> dict[str, str]:
    """The ``<cluster>-app`` secret of a CloudNativePG Cluster bootstrapped with initdb, key by key as the operator
    writes it (pkg/specs/secrets.go, CreateSecret, in the vendored 1.30.0): the owner of the application database,
    its password, and URIs to the read-write Service ``<cluster>-rw`` in the cluster's namespace."""
    name = cluster["metadata"]["name"]
    initdb = cluster["spec"].get("bootstrap", {}).get("initdb", {})
    database, owner = initdb.get("database", "app"), initdb.get("owner", initdb.get("database", "app"))
    host, port = f"{name}-rw", 5432
    credentials = f"{quote(owner, safe='')}:{quote(TEST_CNPG_PASSWORD, safe='')}"
    return {
        "username": owner,
        "user": owner,
        "password": TEST_CNPG_PASSWORD,
        "dbname": database,
        "host": host,
        "port": str(port),
        "pgpass": f"{host}:{port}:{database}:{owner}:{TEST_CNPG_PASSWORD}\n",
        "uri": f"postgresql://{credentials}@{host}.{namespace}:{port}/{database}",
        "jdbc-uri": f"jdbc:postgresql://{host}.{namespace}:{port}/{database}?password={TEST_CNPG_PASSWORD}&user={owner}",
        "fqdn-uri": f"postgresql://{credentials}@{host}.{namespace}.svc.cluster.local:{port}/{database}",
        "fqdn-jdbc-uri": (
            f"jdbc:postgresql://{host}.{namespace}.svc.cluster.local:{port}/{database}"
            f"?password={TEST_CNPG_PASSWORD}&user={owner}"
        ),
    }


# Values the tests give the hand-made secrets (the same for every run: only their shape matters).
TEST_SECRET_VALUES = {
    ("stripe-secret", "STRIPE_KEY"): "sk_test_k8s_smoke_0123456789",
    ("postgres-secret", "POSTGRES_PASSWORD"): "k8s-smoke-test-password",
}


def _new_session_key_ring(path: Path) -> None:
    """A new key ring, as `ticketing keys rotate --file` writes it (infra/README.md, "Session keys")."""
    from ticketing_common.keys import rotate_key_file

    rotate_key_file(path, token_seconds=24 * 3600)


# The hand-made secrets mounted as files (a secret volume): each key's test file, written when first needed into a
# folder that stands in for the volume. Generated, not committed: a private key is a private key.
TEST_SECRET_FILES: dict[tuple[str, str], Callable[[Path], None]] = {
    ("auth-session-keys", "session-keys.json"): _new_session_key_ring,
}
_secret_volumes: dict[tuple[str, tuple[tuple[str, str], ...]], Path] = {}


def secret_volume_items(volume: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, path in the volume) of a ``secret`` volume; every key the tests know for that secret when it lists
    none (the kubelet projects them all)."""
    source = volume["secret"]
    if "items" in source:
        return [(item["key"], item["path"]) for item in source["items"]]
    return [(key, key) for secret, key in TEST_SECRET_FILES if secret == source["secretName"]]


def secret_volume_folder(volume: Mapping[str, Any]) -> Path:
    """A folder of this machine holding what a ``secret`` volume holds, with the test files (one per secret and
    items, for the whole session)."""
    secret = volume["secret"]["secretName"]
    items = tuple(secret_volume_items(volume))
    if (secret, items) not in _secret_volumes:
        root = Path(tempfile.mkdtemp(prefix="k8s-test-secret-volume-"))
        atexit.register(shutil.rmtree, root, True)
        for key, path in items:
            assert (secret, key) in TEST_SECRET_FILES, f"no test file for the key {key} of the secret {secret}"
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            TEST_SECRET_FILES[(secret, key)](root / path)
        _secret_volumes[(secret, items)] = root
    return _secret_volumes[(secret, items)]


# -- a container as Kubernetes would start it ------------------------------------------------------------------

VAR_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion in env values, command and args (``$$`` escapes; unknown stays as is)."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return VAR_REFERENCE.sub(replace, value)


@dataclass
class ContainerEnv:
    """A container's environment as the kubelet builds it, and where each variable came from."""

    values: dict[str, str] = field(default_factory=dict)
    declared: list[str] = field(default_factory=list)  # names from `env`, in order
    from_config_maps: dict[str, str] = field(default_factory=dict)  # name -> ConfigMap
    secret_refs: list[tuple[str, str]] = field(default_factory=list)  # (secret, key)
    config_map_refs: list[tuple[str, str | None]] = field(default_factory=list)  # (config map, key or None)
    # mountPath of a secret volume -> the folder of this machine that stands in for it (test files)
    secret_mounts: dict[str, Path] = field(default_factory=dict)

    def on_this_machine(self) -> dict[str, str]:
        """The values, with a path into a mounted secret volume pointing at the folder standing in for it, as
        ``image_path`` does for the image's paths: what a process of this machine is given."""
        local = dict(self.values)
        for name, value in self.values.items():
            for mount, folder in self.secret_mounts.items():
                if value == mount or value.startswith(mount.rstrip("/") + "/"):
                    local[name] = str(folder) + value[len(mount.rstrip("/")) :]
        return local


def container_env(
    manifests: Manifests,
    container: dict[str, Any],
    *,
    secrets: Mapping[tuple[str, str], str] = TEST_SECRET_VALUES,
    pod_name: str = "pod-0",
) -> ContainerEnv:
    """The environment the kubelet gives ``container``: envFrom first, then env (which wins), with ``$(VAR)``."""
    result = ContainerEnv()
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            result.config_map_refs.append((name, None))
            for key, value in manifests.config_map(name).items():
                result.values[prefix + key] = value
                result.from_config_maps[prefix + key] = name
        elif "secretRef" in source:
            raise AssertionError("envFrom a whole Secret hides which keys a service needs: use secretKeyRef")
    for var in container.get("env", []):
        name = var["name"]
        result.declared.append(name)
        if "value" in var:
            result.values[name] = expand(str(var["value"]), result.values)
            continue
        ref = var["valueFrom"]
        if "secretKeyRef" in ref:
            secret = (ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"])
            result.secret_refs.append(secret)
            generated = manifests.generated_secret(secret[0])
            result.values[name] = generated[secret[1]] if generated is not None else secrets[secret]
        elif "configMapKeyRef" in ref:
            cm, key_name = ref["configMapKeyRef"]["name"], ref["configMapKeyRef"]["key"]
            result.config_map_refs.append((cm, key_name))
            result.values[name] = manifests.config_map(cm)[key_name]
        elif "fieldRef" in ref:
            path = ref["fieldRef"]["fieldPath"]
            assert path == "metadata.name", f"unexpected fieldRef {path}"
            result.values[name] = pod_name
        else:
            raise AssertionError(f"unsupported valueFrom in {name}: {ref}")
    pod = manifests.pod_of(container)
    volumes = {v["name"]: v for v in (pod or {}).get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"], {})
        if "secret" in volume:
            assert "subPath" not in mount, "a subPath mount never sees the secret change: mount the folder"
            result.secret_mounts[mount["mountPath"]] = secret_volume_folder(volume)
    return result


# -- images: what the Dockerfile says ----------------------------------------------------------------------------


# $NAME, ${NAME}, and the shell's ${NAME:-default} and ${NAME:?message}.
ARG_REFERENCE = re.compile(r"\$\{(\w+)(?:(:[-?])([^}]*))?\}|\$(\w+)")


def expand_args(text: str, args: Mapping[str, str]) -> str:
    """``text`` with the references to ``args`` replaced by their values, as Docker does in COPY, ENV, FROM... and
    as a RUN's shell does with the ARGs in its environment. Other names stay as they are; so does
    ``${NAME:?message}`` when NAME is empty (the shell stops there)."""

    def replace(match: re.Match[str]) -> str:
        name = match[1] or match[4]
        if name not in args:
            return match[0]
        value = args[name]
        if match[2] == ":-":
            return value or match[3]
        if match[2] == ":?" and not value:
            return match[0]
        return value

    return ARG_REFERENCE.sub(replace, text)


@dataclass
class Dockerfile:
    """The parts of a Dockerfile the tests reason about (instructions of each stage, continuation lines joined).

    As parsed, the instructions are as written; :meth:`for_build` gives them as one build reads them."""

    path: Path
    stages: list[list[tuple[str, str]]]  # per stage: (INSTRUCTION, arguments)
    # After for_build: per stage, the values of the ARGs it declares (what its RUN commands see in their environment).
    args: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def parse(cls, path: Path) -> Dockerfile:
        lines: list[str] = []
        pending = ""
        for raw in path.read_text().splitlines():
            stripped = raw.strip()
            if not pending and (not stripped or stripped.startswith("#")):
                continue
            if stripped.startswith("#"):
                continue
            if stripped.endswith("\\"):
                pending += stripped[:-1] + " "
                continue
            lines.append(pending + stripped)
            pending = ""
        stages: list[list[tuple[str, str]]] = [[]]
        for line in lines:
            instruction, _, arguments = line.partition(" ")
            instruction = instruction.upper()
            if instruction == "FROM" and stages[-1] and any(i == "FROM" for i, _ in stages[-1]):
                stages.append([])
            stages[-1].append((instruction, arguments.strip()))
        return cls(path, stages)

    def for_build(self, build_args: Mapping[str, str]) -> Dockerfile:
        """The instructions as the build with these ``--build-arg`` values (skaffold's ``buildArgs``) reads them.

        Each ARG takes the build's value, else its default; a stage's ``ARG NAME`` without one takes the value of
        the global ARG of that name (declared before the first FROM), which only FROM lines see otherwise. Its
        references in the stage's later instructions are replaced, except in RUN, whose shell reads the ARGs from
        its environment (``args``), as Docker does."""
        global_args: dict[str, str] = {}
        stages: list[list[tuple[str, str]]] = []
        stage_args: list[dict[str, str]] = []
        for stage in self.stages:
            values: dict[str, str] = {}
            instructions: list[tuple[str, str]] = []
            started = False
            for inst, arguments in stage:
                if inst == "FROM":
                    started = True
                    instructions.append((inst, expand_args(arguments, global_args)))
                    continue
                scope = values if started else global_args
                if inst == "ARG":
                    name, has_default, default = arguments.partition("=")
                    if name in build_args:
                        scope[name] = build_args[name]
                    elif has_default:
                        scope[name] = expand_args(default.strip("\"'"), scope)
                    else:
                        scope[name] = global_args.get(name, "") if started else ""
                    instructions.append((inst, arguments))
                elif inst == "RUN":
                    instructions.append((inst, arguments))
                else:
                    instructions.append((inst, expand_args(arguments, scope)))
            stages.append(instructions)
            stage_args.append(values)
        return Dockerfile(self.path, stages, stage_args)

    @property
    def final(self) -> list[tuple[str, str]]:
        return self.stages[-1]

    def all(self, instruction: str) -> list[str]:
        return [args for stage in self.stages for inst, args in stage if inst == instruction]

    @property
    def cmd(self) -> list[str]:
        commands = [args for inst, args in self.final if inst == "CMD"]
        assert commands, f"{self.path}: no CMD in the final stage"
        value = json.loads(commands[-1])  # exec form only: a shell would not forward SIGTERM
        assert isinstance(value, list)
        return [str(v) for v in value]

    @property
    def entrypoint(self) -> list[str]:
        entries = [args for inst, args in self.final if inst == "ENTRYPOINT"]
        return [str(v) for v in json.loads(entries[-1])] if entries else []

    @property
    def exposed(self) -> list[str]:
        return [port for inst, args in self.final if inst == "EXPOSE" for port in args.split()]

    @property
    def user(self) -> str | None:
        users = [args for inst, args in self.final if inst == "USER"]
        return users[-1] if users else None

    @property
    def env(self) -> dict[str, str]:
        """The final stage's ENV, expanded as Docker does (``${VAR}`` from earlier values and the base PATH)."""
        values = {"PATH": BASE_IMAGE_PATH}
        for inst, args in self.final:
            if inst != "ENV":
                continue
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                values[key] = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m[1] or m[2], ""), value)
        return values


def image_path(value: str) -> str:
    """A path inside the image, as the same path in this workspace (the image keeps the workspace layout)."""
    venv = Path(sys.prefix)
    if value == IMAGE_VENV or value.startswith(IMAGE_VENV + "/"):
        return str(venv) + value[len(IMAGE_VENV) :]
    if value == IMAGE_WORKDIR or value.startswith(IMAGE_WORKDIR + "/"):
        return str(REPO) + value[len(IMAGE_WORKDIR) :]
    return value


def container_command(container: dict[str, Any], dockerfile: Dockerfile, env: Mapping[str, str]) -> list[str]:
    """What the kubelet runs: command/args from the manifest, else the image's ENTRYPOINT/CMD (with ``$(VAR)``)."""
    if "command" in container:
        argv = [*container["command"], *container.get("args", [])]
    elif "args" in container:
        argv = [*dockerfile.entrypoint, *container["args"]]
    else:
        argv = [*dockerfile.entrypoint, *dockerfile.cmd]
    return [expand(str(arg), env) for arg in argv]


# -- the build context: .dockerignore ---------------------------------------------------------------------------


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go's filepath.Match plus ``**``) as a regex over slash-separated paths."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def docker_context_includes(path: str) -> bool:
    """Whether ``path`` (relative to the repository root) is sent to the build: Docker's rules, the last matching
    pattern wins, and a pattern that matches a parent folder matches everything below it."""
    rules = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
        rules.append((negate, _dockerignore_regex(pattern)))
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for negate, regex in rules:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            included = negate
    return included


# -- skaffold.yaml -----------------------------------------------------------------------------------------------


def _json_pointer(doc: Any, path: str) -> tuple[Any, str]:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]
    node = doc
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    return node, parts[-1]


def _merge(base: Any, overlay: Any) -> Any:
    if isinstance(base, dict) and isinstance(overlay, dict):
        merged = dict(base)
        for key, value in overlay.items():
            merged[key] = _merge(base.get(key), value) if key in base else value
        return merged
    return overlay


def skaffold_config(profile: str | None) -> dict[str, Any]:
    """skaffold.yaml with profiles applied as skaffold applies them (``-p a,b``: in that order): each one's sections
    laid onto the main ones, then its JSON patches."""
    config: dict[str, Any] = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    for name in profile.split(",") if profile else []:
        config = _apply_profile(config, next(p for p in config.get("profiles", []) if p["name"] == name))
    return config


def _apply_profile(config: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    for section in ("build", "test", "manifests", "deploy"):
        if section in spec:
            config[section] = _merge(config.get(section, {}), spec[section])
    for patch in spec.get("patches", []):
        parent, key = _json_pointer(config, patch["path"])
        op = patch.get("op", "replace")
        if isinstance(parent, list):
            index = len(parent) if key == "-" else int(key)
            if op == "add":
                parent.insert(index, patch["value"])
            elif op == "replace":
                parent[index] = patch["value"]
            else:
                del parent[index]
        elif op in ("add", "replace"):
            assert op == "add" or key in parent, f"skaffold patch replaces a missing {patch['path']}"
            parent[key] = patch["value"]
        else:
            del parent[key]
    return config
