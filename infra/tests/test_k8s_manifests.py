"""The overlays render, every object is valid Kubernetes (custom resources against their vendored CRDs), and the
manifests meet the platform's requirements."""

from __future__ import annotations

import copy
import functools
import re
from typing import Any

import crd_schemas
import pytest
import yaml
from deploy_support import (
    ALL_OVERLAYS,
    INGRESS_OVERLAYS,
    K8S,
    KUBERNETES_VERSION,
    OVERLAYS,
    Deployable,
    Manifests,
    environment,
)

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate (dev dependency) is needed to validate the manifests offline"
)
# kubernetes-validate reads and parses its schema files (a 1 MB _definitions.json among them) for every object;
# they never change during a run, so read each once: the four overlays' validation drops from seconds to a fraction.
kubernetes_validate.utils.schema_contents = functools.cache(kubernetes_validate.utils.schema_contents)

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


def _schema_problems(obj: dict[str, Any]) -> list[str]:
    """What is wrong with an object: a custom resource against its vendored CRD (infra/schemas), anything else
    against the Kubernetes schemas; an object of a kind with neither is a problem too."""
    if crd_schemas.has_schema(obj):
        return crd_schemas.errors(obj)
    try:
        # strict: unknown fields (a typo such as `replica:`) are errors, as `kubectl apply` would report them
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as exc:
        return [str(getattr(exc, "message", exc))]
    return []


@pytest.mark.parametrize("overlay", ALL_OVERLAYS)
def test_every_rendered_object_is_valid_against_the_pinned_schemas(
    rendered: dict[str, Manifests], overlay: str
) -> None:
    problems = [f"{_label(obj)}: {problem}" for obj in rendered[overlay].objects for problem in _schema_problems(obj)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_gateway_api_is_the_default_entry_point(rendered: dict[str, Manifests], overlay: str) -> None:
    manifests = rendered[overlay]
    assert [g["metadata"]["name"] for g in manifests.of_kind("Gateway")] == ["ticketing"]
    assert manifests.find("HTTPRoute", "ticketing") is not None
    assert not manifests.of_kind("Ingress"), "the Ingress is optional (components/ingress-nginx)"


@pytest.mark.parametrize("overlay", INGRESS_OVERLAYS)
def test_the_ingress_variant_needs_no_gateway_api(rendered: dict[str, Manifests], overlay: str) -> None:
    """Behind ingress-nginx, nothing of the Gateway API (or GKE's policies for it) is rendered: the overlay applies
    to a cluster without those CRDs."""
    manifests = rendered[overlay]
    assert len(manifests.of_kind("Ingress")) == 1
    groups = {o["apiVersion"].rpartition("/")[0] for o in manifests.objects}
    assert not groups & {"gateway.networking.k8s.io", "networking.gke.io"}, groups


def test_the_vendored_schemas_are_the_pinned_files() -> None:
    """Nobody edited a vendored schema by hand: each file is the one sources.json pins (repository, commit,
    sha256), and every file under infra/schemas is listed there."""
    sources = crd_schemas.sources()
    assert all(source.intact() for source in sources), [s.file for s in sources if not s.intact()]
    assert all(re.fullmatch(r"[0-9a-f]{40}", source.commit) for source in sources)
    listed = {source.location for source in sources}
    vendored = {
        p for p in crd_schemas.SCHEMAS.rglob("*") if p.suffix in (".yaml", ".json") and p.parent != crd_schemas.SCHEMAS
    }
    assert vendored == listed


def test_the_schema_check_rejects_an_invalid_object(rendered: dict[str, Manifests]) -> None:
    """The validation above can fail: a misspelt field and a wrong type are both caught, in a built-in object and
    in custom resources."""
    deployment = copy.deepcopy(rendered["dev"].get("Deployment", "auth"))
    deployment["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    deployment = copy.deepcopy(rendered["dev"].get("Deployment", "auth"))
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)

    route = copy.deepcopy(rendered["dev"].get("HTTPRoute", "ticketing"))
    route["spec"]["rules"][0]["matches"][0]["path"]["type"] = "Prefix"  # the Ingress's word, not the Gateway API's
    route["spec"]["rules"][1]["backendRefs"][0]["prot"] = 3000
    assert len(_schema_problems(route)) == 2, _schema_problems(route)
    cluster = copy.deepcopy(rendered["gke"].get("Cluster", "orders-db"))
    cluster["spec"]["instance"] = 2
    cluster["spec"]["storage"]["size"] = 10
    assert len(_schema_problems(cluster)) == 2, _schema_problems(cluster)
    policy = copy.deepcopy(rendered["gke"].get("HealthCheckPolicy", "orders-srv"))
    policy["spec"]["default"]["config"]["httpHealthCheck"]["path"] = "/healthz"
    assert _schema_problems(policy)
    scaled_object = copy.deepcopy(rendered["gke-keda"].get("ScaledObject", "orders"))
    scaled_object["spec"]["minReplicas"] = 2  # the HorizontalPodAutoscaler's word, not KEDA's minReplicaCount
    scaled_object["spec"]["triggers"][1]["metadata"]["lagThreshold"] = 2000  # KEDA's metadata is strings
    assert len(_schema_problems(scaled_object)) == 2, _schema_problems(scaled_object)
    assert _schema_problems({"apiVersion": "example.com/v1", "kind": "Unknown", "metadata": {"name": "x"}})


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
    """dev: one replica each, no autoscaler. gke: an autoscaler from two replicas up owns the count, which the
    Deployment leaves unset (else every `kubectl apply` would reset it)."""
    manifests = rendered[overlay]
    for name in deployables:
        deployment = manifests.get("Deployment", name)
        hpa = manifests.autoscaler("Deployment", name)
        if environment(overlay) == "dev":
            assert hpa is None, name
            assert deployment["spec"]["replicas"] == 1, name
        else:
            assert hpa is not None, f"{name} has no HorizontalPodAutoscaler"
            assert "replicas" not in deployment["spec"], f"{name}: the autoscaler owns the replica count"
        assert manifests.min_replicas(deployment) == HTTP_REPLICAS[environment(overlay)], name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nats_runs_jetstream_on_a_volume_with_as_many_stream_replicas_as_nodes(
    rendered: dict[str, Manifests], overlay: str
) -> None:
    manifests = rendered[overlay]
    nodes = NATS_NODES[environment(overlay)]
    nats = manifests.get("StatefulSet", "nats")
    assert nats["spec"]["replicas"] == nodes
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
    assert sorted(routes) == ([f"nats-{i}" for i in range(nodes)] if nodes > 1 else [])
    assert manifests.config_map(_shared_config_name(manifests))["NATS_STREAM_REPLICAS"] == str(nodes)


def test_dev_runs_a_postgres_statefulset_with_a_volume_per_database_service(
    rendered: dict[str, Manifests], deployables: dict[str, Deployable]
) -> None:
    manifests = rendered["dev"]
    assert not manifests.of_kind("Cluster"), "dev keeps single PostgreSQL pods"
    for deployable in deployables.values():
        postgres = manifests.find("StatefulSet", f"{deployable.name}-postgres")
        assert (postgres is not None) == deployable.has_migrations, deployable.name
        if postgres is not None:
            assert postgres["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
            image = postgres["spec"]["template"]["spec"]["containers"][0]["image"]
            assert re.fullmatch(r"postgres:\d+\.\d+(-alpine)?", image), f"pinned to a release: {image}"


def test_gke_runs_a_replicated_cloudnative_pg_cluster_with_backups_per_database_service(
    rendered: dict[str, Manifests], deployables: dict[str, Deployable]
) -> None:
    manifests = rendered["gke"]
    assert not [s for s in manifests.of_kind("StatefulSet") if s["metadata"]["name"].endswith("-postgres")]
    stores = {s["metadata"]["name"]: s for s in manifests.of_kind("ObjectStore")}
    clusters = {c["metadata"]["name"]: c for c in manifests.of_kind("Cluster")}
    assert set(clusters) == {f"{d.name}-db" for d in deployables.values() if d.has_migrations}
    for name, cluster in clusters.items():
        spec = cluster["spec"]
        assert spec["instances"] >= 2, f"{name}: a primary and at least one standby"
        assert spec["affinity"]["enablePodAntiAffinity"] is True, f"{name}: instances on different nodes"
        assert re.fullmatch(r"ghcr\.io/cloudnative-pg/postgresql:\d+\.\d+-\w+-\w+", spec["imageName"]), name
        assert spec.get("enablePDB", True), f"{name}: the operator's disruption budget"
        # Continuous WAL archiving (point-in-time recovery) to an object store that exists in the overlay...
        (archiver,) = [p for p in spec["plugins"] if p.get("isWALArchiver")]
        assert archiver["name"] == "barman-cloud.cloudnative-pg.io"
        store = stores[archiver["parameters"]["barmanObjectName"]]
        assert store["spec"]["configuration"]["destinationPath"].startswith("gs://")
        assert store["spec"]["configuration"]["googleCredentials"] == {"gkeEnvironment": True}, "Workload Identity"
        assert store["spec"].get("retentionPolicy"), "old backups are removed"
        # ...and base backups on a schedule, through the same plugin.
        schedules = [b for b in manifests.of_kind("ScheduledBackup") if b["spec"]["cluster"]["name"] == name]
        assert len(schedules) == 1, name
        assert schedules[0]["spec"]["method"] == "plugin"
        assert schedules[0]["spec"]["pluginConfiguration"]["name"] == archiver["name"]
        assert len(schedules[0]["spec"]["schedule"].split()) == 6, "CloudNativePG's schedules have a seconds field"


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
            synced = (
                environment(overlay) == "dev" and workload["kind"] == "Deployment" and container in pod["containers"]
            )
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
    for cluster in rendered[overlay].of_kind("Cluster"):  # else the operator's default, which moves with it
        assert re.search(r":\d+\.\d+", cluster["spec"].get("imageName", "")), f"{_label(cluster)} pins no image"


def test_the_gke_overlay_keeps_a_replica_of_everything_through_node_drains(rendered: dict[str, Manifests]) -> None:
    manifests = rendered["gke"]
    budgets = {p["metadata"]["name"]: p for p in manifests.of_kind("PodDisruptionBudget")}
    for workload in manifests.workloads:
        replicas = manifests.min_replicas(workload)
        assert replicas >= 2, f"{_label(workload)} runs a single replica"
        labels = workload["spec"]["selector"]["matchLabels"]
        matching = [p for p in budgets.values() if p["spec"]["selector"]["matchLabels"] == labels]
        assert len(matching) == 1, f"{_label(workload)} has {len(matching)} PodDisruptionBudgets"
        spec = matching[0]["spec"]
        # maxUnavailable holds whatever the autoscaler's count; minAvailable would have to follow it.
        assert spec.get("minAvailable", 0) >= 1 or spec.get("maxUnavailable", 99) < replicas
        if workload["kind"] == "Deployment":
            assert spec.get("unhealthyPodEvictionPolicy") == "AlwaysAllow", (
                "a pod that is not ready never blocks a drain"
            )


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


def test_the_documented_restore_is_the_overlay_cluster_bootstrapped_from_its_backups(
    rendered: dict[str, Manifests],
) -> None:
    """infra/k8s/overlays/gke/postgres/restore/<cluster>.yaml (infra/README.md, "Restore a database") is a valid
    Cluster, identical to the overlay's but for its bootstrap (recovery from the archive the overlay's cluster
    writes) and a new archive folder."""
    restores = sorted((K8S / "overlays" / "gke" / "postgres" / "restore").glob("*.yaml"))
    assert restores, "an example restore"
    for path in restores:
        restore = yaml.safe_load(path.read_text())
        assert not _schema_problems(restore), _schema_problems(restore)
        live = rendered["gke"].get("Cluster", restore["metadata"]["name"])
        recovery = restore["spec"]["bootstrap"]["recovery"]
        initdb = live["spec"]["bootstrap"]["initdb"]
        assert (recovery["database"], recovery["owner"]) == (initdb["database"], initdb["owner"])
        (source,) = [c for c in restore["spec"]["externalClusters"] if c["name"] == recovery["source"]]
        (archiver,) = [p for p in live["spec"]["plugins"] if p.get("isWALArchiver")]
        assert source["plugin"]["name"] == archiver["name"]
        assert source["plugin"]["parameters"] == {
            **archiver["parameters"],
            "serverName": archiver["parameters"].get("serverName", live["metadata"]["name"]),
        }, "it reads the archive the live cluster writes"
        (new_archiver,) = [p for p in restore["spec"]["plugins"] if p.get("isWALArchiver")]
        assert new_archiver["parameters"]["serverName"] != source["plugin"]["parameters"]["serverName"]
        same = {k: v for k, v in restore["spec"].items() if k not in ("bootstrap", "externalClusters", "plugins")}
        assert same == {k: v for k, v in live["spec"].items() if k not in ("bootstrap", "plugins")}
