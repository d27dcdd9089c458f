"""The overlays render, every object is valid Kubernetes, and the manifests meet the platform's requirements."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from deploy_support import KUBERNETES_VERSION, OVERLAYS, Deployable, Manifests

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate (dev dependency) is needed to validate the manifests offline"
)

HTTP_REPLICAS = {"dev": 1, "gke": 2}
NATS_NODES = {"dev": 1, "gke": 3}


def _label(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_a_deployment_and_a_service_per_deployable(
    rendered: dict[str, Manifests], deployables: dict[str, Deployable], overlay: str
) -> None:
    manifests = rendered[overlay]
    assert {d["metadata"]["name"] for d in manifests.of_kind("Deployment")} == set(deployables)
    for name in deployables:
        service = manifests.get("Service", f"{name}-srv")
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
        assert service["spec"]["selector"] == manifests.get("Deployment", name)["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_is_valid_against_the_pinned_kubernetes_schemas(
    rendered: dict[str, Manifests], overlay: str
) -> None:
    problems = []
    for obj in rendered[overlay].objects:
        try:
            # strict: unknown fields (a typo such as `replica:`) are errors, as `kubectl apply` would report them
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as exc:
            problems.append(f"{_label(obj)}: {getattr(exc, 'message', exc)}")
    assert not problems, "\n".join(problems)


def test_the_schema_check_rejects_an_invalid_object(rendered: dict[str, Manifests]) -> None:
    """The validation above can fail: a misspelt field and a wrong type are both caught."""
    deployment = copy.deepcopy(rendered["dev"].get("Deployment", "auth"))
    deployment["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    deployment = copy.deepcopy(rendered["dev"].get("Deployment", "auth"))
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_is_committed(rendered: dict[str, Manifests], overlay: str) -> None:
    manifests = rendered[overlay]
    assert not manifests.of_kind("Secret"), "secrets are created by hand (infra/README.md), never rendered"
    for workload in manifests.workloads:
        for container in manifests.containers(workload):
            for var in container.get("env", []):
                if re.search(r"(^|_)(KEY|SECRET|PASSWORD|TOKEN)$", var["name"]) and "value" in var:
                    assert "$(" in var["value"], f"{_label(workload)}: {var['name']} is a literal, use a secretKeyRef"
    for config_map in manifests.of_kind("ConfigMap"):
        for key in config_map.get("data", {}):
            assert not re.search(r"(^|_)(KEY|SECRET|PASSWORD|TOKEN)$", key), f"{_label(config_map)} holds {key}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_run_the_replicas_of_their_environment(
    rendered: dict[str, Manifests], deployables: dict[str, Deployable], overlay: str
) -> None:
    for name in deployables:
        assert rendered[overlay].get("Deployment", name)["spec"]["replicas"] == HTTP_REPLICAS[overlay], name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nats_runs_jetstream_on_a_volume_with_as_many_stream_replicas_as_nodes(
    rendered: dict[str, Manifests], overlay: str
) -> None:
    manifests = rendered[overlay]
    nats = manifests.get("StatefulSet", "nats")
    assert nats["spec"]["replicas"] == NATS_NODES[overlay]
    image = nats["spec"]["template"]["spec"]["containers"][0]["image"]
    version = re.fullmatch(r"nats:(\d+)\.(\d+)\.(\d+)(-alpine)?", image)
    assert version, f"the NATS image is pinned to a release: {image}"
    assert (int(version[1]), int(version[2])) >= (2, 12), "message schedules need nats-server 2.12 or newer"
    mounts = {m["name"]: m["mountPath"] for m in nats["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert [c["metadata"]["name"] for c in nats["spec"]["volumeClaimTemplates"]] == ["data"]
    config = manifests.config_map(_volume_config_map(nats, "config"))["nats.conf"]
    store_dir = re.search(r"store_dir:\s*(\S+)", config)
    assert store_dir, "JetStream has a store directory"
    assert store_dir[1].startswith(mounts["data"]), "JetStream stores on the PersistentVolumeClaim"
    routes = re.findall(r"nats://(nats-\d+)\.nats-headless:6222", config)
    assert sorted(routes) == ([f"nats-{i}" for i in range(NATS_NODES[overlay])] if NATS_NODES[overlay] > 1 else [])
    assert manifests.config_map(_shared_config_name(manifests))["NATS_STREAM_REPLICAS"] == str(NATS_NODES[overlay])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_database_service_has_its_own_postgres_statefulset_with_a_volume(
    rendered: dict[str, Manifests], deployables: dict[str, Deployable], overlay: str
) -> None:
    manifests = rendered[overlay]
    for deployable in deployables.values():
        postgres = manifests.find("StatefulSet", f"{deployable.name}-postgres")
        assert (postgres is not None) == deployable.has_migrations, deployable.name
        if postgres is not None:
            assert postgres["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
            image = postgres["spec"]["template"]["spec"]["containers"][0]["image"]
            assert re.fullmatch(r"postgres:\d+\.\d+(-alpine)?", image), f"pinned to a release: {image}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_containers_probe_health_and_readiness_with_requests_and_limits(
    rendered: dict[str, Manifests], deployables: dict[str, Deployable], overlay: str
) -> None:
    manifests = rendered[overlay]
    for name in deployables:
        deployment = manifests.get("Deployment", name)
        main = deployment["spec"]["template"]["spec"]["containers"][0]
        assert main["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert main["livenessProbe"]["httpGet"]["path"] == "/healthz", name
    for workload in manifests.workloads:
        for container in manifests.containers(workload):
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), f"{_label(workload)}/{container['name']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_containers_run_unprivileged_on_a_read_only_root_filesystem(
    rendered: dict[str, Manifests], deployables: dict[str, Deployable], overlay: str
) -> None:
    manifests = rendered[overlay]
    for workload in manifests.workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, _label(workload)
        assert pod["securityContext"]["runAsUser"] > 0, _label(workload)
        assert pod.get("automountServiceAccountToken") is False, f"{_label(workload)} never talks to the API server"
        # No Docker-link variables (NATS_PORT=tcp://...): the environment is exactly what the manifest declares.
        assert pod.get("enableServiceLinks") is False, _label(workload)
        for container in manifests.containers(workload):
            where = f"{_label(workload)}/{container['name']}"
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in security["capabilities"], where
            # The one exception: on a local cluster, skaffold's file sync writes the services' code (dev overlay).
            synced = overlay == "dev" and workload["kind"] == "Deployment" and container in pod["containers"]
            assert security["readOnlyRootFilesystem"] is not synced, where
            if workload["kind"] == "Deployment":
                mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
                assert "tmp" in {v["name"] for v in pod["volumes"] if "emptyDir" in v}, where
                assert mounts.get("/tmp") == "tmp", f"{where}: a writable /tmp (emptyDir)"  # noqa: S108


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_third_party_images_are_pinned(rendered: dict[str, Manifests], overlay: str) -> None:
    ours = re.compile(r"([a-z0-9.-]+(:\d+)?/[\w./-]+/)?ticketing-[a-z]+")
    for workload in rendered[overlay].workloads:
        for container in rendered[overlay].containers(workload):
            image = container["image"]
            if not ours.fullmatch(image):  # ours are tagged by skaffold at deploy time
                assert re.search(r":\d+\.\d+", image), f"{_label(workload)} runs an unpinned image {image}"


def test_the_gke_overlay_keeps_a_replica_of_everything_through_node_drains(rendered: dict[str, Manifests]) -> None:
    manifests = rendered["gke"]
    budgets = {p["metadata"]["name"]: p for p in manifests.of_kind("PodDisruptionBudget")}
    for workload in manifests.workloads:
        if workload["spec"]["replicas"] < 2:
            continue
        labels = workload["spec"]["selector"]["matchLabels"]
        matching = [p for p in budgets.values() if p["spec"]["selector"]["matchLabels"] == labels]
        assert matching, f"{_label(workload)} has {workload['spec']['replicas']} replicas but no PodDisruptionBudget"
        spec = matching[0]["spec"]
        assert spec.get("minAvailable", 0) >= 1 or spec.get("maxUnavailable", 99) < workload["spec"]["replicas"]


def test_the_gke_overlay_pulls_every_image_of_ours_from_a_registry(rendered: dict[str, Manifests]) -> None:
    for deployment in rendered["gke"].of_kind("Deployment"):
        for container in rendered["gke"].containers(deployment):
            registry, _, name = container["image"].rpartition("/")
            assert "." in registry.split("/")[0], f"{container['image']} names no registry host"
            assert name == f"ticketing-{deployment['metadata']['name']}"


def _volume_config_map(workload: dict[str, Any], volume: str) -> str:
    for v in workload["spec"]["template"]["spec"]["volumes"]:
        if v["name"] == volume:
            name: str = v["configMap"]["name"]
            return name
    raise AssertionError(f"no volume {volume}")


def _shared_config_name(manifests: Manifests) -> str:
    names = [c["metadata"]["name"] for c in manifests.of_kind("ConfigMap")]
    shared = [n for n in names if n.startswith("ticketing-config")]
    assert len(shared) == 1, names
    return shared[0]
