"""Traces in the cluster (the component infra/k8s/components/tracing): in an overlay with it, every Python process
of the platform exports its spans to the collector that one ConfigMap names, and records a fraction of the traces,
each whole; in an overlay without it, nothing exports a span.

The variables are checked against what reads them, at test time: the services' settings (which turn tracing on)
and the installed OpenTelemetry SDK (which builds the sampler from them).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from deploy_support import (
    ALL_OVERLAYS,
    TRACED_OVERLAYS,
    Deployable,
    Manifests,
    container_env,
    environment,
)
from opentelemetry import trace
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace import sampling
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from ticketing_common import tracing
from ticketing_common.testing import recording_spans

ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
SAMPLER = "OTEL_TRACES_SAMPLER"
SAMPLER_ARG = "OTEL_TRACES_SAMPLER_ARG"
# The ConfigMap's name before kustomize appends the hash of its content (infra/README.md, "Traces").
CONFIG_MAP = "tracing"
UNTRACED_OVERLAYS = tuple(overlay for overlay in ALL_OVERLAYS if overlay not in TRACED_OVERLAYS)


def _tracing_config_map(manifests: Manifests) -> dict[str, Any]:
    """The one ConfigMap that holds OpenTelemetry variables."""
    holding = [c for c in manifests.of_kind("ConfigMap") if any(k.startswith("OTEL_") for k in c.get("data", {}))]
    assert len(holding) == 1, f"{manifests.overlay}: one ConfigMap sets tracing, not {[_name(c) for c in holding]}"
    (config_map,) = holding
    assert re.fullmatch(rf"{CONFIG_MAP}-[a-z0-9]{{10}}", _name(config_map)), (
        f"{manifests.overlay}: the ConfigMap is the documented `{CONFIG_MAP}`, generated (its hash rolls the pods)"
    )
    return config_map


def _name(obj: dict[str, Any]) -> str:
    name: str = obj["metadata"]["name"]
    return name


def _otel_variables(manifests: Manifests, workload: dict[str, Any]) -> set[str]:
    """The OpenTelemetry variables any container of the workload gets, whatever their source."""
    return {
        key
        for container in manifests.containers(workload)
        for key in container_env(manifests, container).values
        if key.startswith("OTEL_")
    }


def test_the_platform_on_gke_is_traced_and_on_a_local_cluster_not_unless_its_overlay_adds_the_component() -> None:
    """The decision: a production cluster records traces (a fraction of them), and needs a collector for it; a local
    cluster has none unless one is installed (infra/README.md, "Traces", says how to add the component)."""
    assert set(TRACED_OVERLAYS) == {overlay for overlay in ALL_OVERLAYS if environment(overlay) == "gke"}


@pytest.mark.parametrize("overlay", TRACED_OVERLAYS)
def test_every_process_of_a_traced_overlay_reads_the_variables_from_the_one_config_map(
    rendered: dict[str, Manifests], deployables: dict[str, Deployable], overlay: str
) -> None:
    """Each container of each Python Deployment (the migrations too: an init container has the settings of the
    service it migrates for) gets every key of the ConfigMap from it, and sets none of them itself (``env`` would
    win over ``envFrom``: a second place that says where the spans go)."""
    manifests = rendered[overlay]
    config_map = _tracing_config_map(manifests)
    assert {ENDPOINT, SAMPLER, SAMPLER_ARG} <= set(config_map["data"])
    problems = []
    for name in deployables:
        for container in manifests.containers(manifests.get("Deployment", name)):
            env = container_env(manifests, container)
            where = f"{name}/{container['name']}"
            for key, value in config_map["data"].items():
                if key not in env.values:
                    problems.append(f"{where} does not get {key}")
                elif env.from_config_maps.get(key) != _name(config_map) or env.values[key] != value:
                    problems.append(f"{where} gets {key} from elsewhere")
            problems += [f"{where} sets {key} itself" for key in env.declared if key.startswith("OTEL_")]
    assert not problems, f"{overlay}:\n" + "\n".join(problems)


@pytest.mark.parametrize("overlay", TRACED_OVERLAYS)
def test_every_process_of_a_traced_overlay_turns_tracing_on_towards_the_collector(
    rendered: dict[str, Manifests], deployables: dict[str, Deployable], overlay: str, clean_environ: pytest.MonkeyPatch
) -> None:
    """The endpoint reaches what turns tracing on: the process's settings (``OTEL_EXPORTER_OTLP_ENDPOINT``,
    ``ticketing_common.config.ObservabilitySettings``), read from exactly the environment the manifest declares."""
    manifests = rendered[overlay]
    endpoint = _tracing_config_map(manifests)["data"][ENDPOINT]
    for name, deployable in deployables.items():
        deployable.require_present()
        container = manifests.get("Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        with pytest.MonkeyPatch.context() as env:
            for key, value in container_env(manifests, container).on_this_machine().items():
                env.setenv(key, value)
            settings = deployable.settings_cls()
        assert settings.otel_exporter_otlp_endpoint == endpoint, f"{overlay}: {name} would not trace"


@pytest.mark.parametrize("overlay", TRACED_OVERLAYS)
def test_the_collector_endpoint_is_an_http_url_of_a_host_and_a_port(
    rendered: dict[str, Manifests], overlay: str
) -> None:
    """The base URL of the collector's OTLP/HTTP receiver: the processes send to ``<endpoint>/v1/traces``, so a path
    of its own would be sent to twice over; the port is explicit (the collector's is 4318, not http's 80)."""
    endpoint = _tracing_config_map(rendered[overlay])["data"][ENDPOINT]
    url = urlsplit(endpoint)
    assert url.scheme in ("http", "https"), endpoint
    assert url.hostname, endpoint
    assert url.port is not None, f"{endpoint}: name the collector's port"
    assert url.path in ("", "/"), f"{endpoint}: the base URL, without /v1/traces"
    assert not url.query, endpoint
    assert not url.fragment, endpoint
    assert not url.username, f"{endpoint}: credentials go in OTEL_EXPORTER_OTLP_HEADERS, not in the URL"


@contextlib.contextmanager
def _sampler_of_a_process_with(variables: dict[str, str], environ: pytest.MonkeyPatch) -> Iterator[sampling.Sampler]:
    """The sampler the OpenTelemetry SDK builds when ``ticketing_common.tracing`` turns tracing on in a process whose
    environment is ``variables``."""
    for key, value in variables.items():
        environ.setenv(key, value)
    assert tracing.tracer is None, "tracing was left on by something else"
    with recording_spans("probe"):
        tracer = tracing.tracer
        assert isinstance(tracer, sdk_trace.Tracer)
        yield tracer.sampler


@pytest.mark.parametrize("overlay", TRACED_OVERLAYS)
def test_the_sdk_builds_the_sampler_the_config_map_names_at_the_rate_it_names(
    rendered: dict[str, Manifests], overlay: str, clean_environ: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The SDK falls back to recording every trace, with only a warning, when it does not know the sampler's name
    or cannot use its argument: the name must be one of the SDK's own, and the sampler built the one it names."""
    data = _tracing_config_map(rendered[overlay])["data"]
    name = data[SAMPLER]
    known_names = sorted(sampling._KNOWN_SAMPLERS)
    assert name in known_names, f"{name}: not one of the SDK's {known_names}"
    known = sampling._KNOWN_SAMPLERS[name]
    if isinstance(known, sampling.Sampler):  # a sampler without an argument
        expected = known
    else:
        assert SAMPLER_ARG in data, f"{name} takes a rate"
        try:
            expected = known(float(data[SAMPLER_ARG]))
        except ValueError as exc:
            raise AssertionError(f"{name} cannot take {data[SAMPLER_ARG]!r}: {exc}") from None
    with caplog.at_level(logging.WARNING), _sampler_of_a_process_with(data, clean_environ) as sampler:
        assert sampler.get_description() == expected.get_description()
    assert not [r for r in caplog.records if r.name.startswith("opentelemetry")], caplog.text


def _decision(sampler: sampling.Sampler, trace_id: int, parent: TraceFlags | None) -> bool:
    """Whether ``sampler`` records a span of ``trace_id``, a root or the child of a remote parent with ``parent``."""
    context = None
    if parent is not None:
        remote = SpanContext(trace_id, 0x00F067AA0BA902B7, is_remote=True, trace_flags=parent)
        context = trace.set_span_in_context(NonRecordingSpan(remote))
    return sampler.should_sample(context, trace_id, "GET /").decision.is_sampled()


@pytest.mark.parametrize("overlay", TRACED_OVERLAYS)
def test_a_traced_overlay_records_a_fraction_of_the_traces_each_whole(
    rendered: dict[str, Manifests], overlay: str, clean_environ: pytest.MonkeyPatch
) -> None:
    """Recording costs CPU (``make bench``, "tracing": some 80 µs a span, 1-4 ms an order), so where a trace starts
    only some are recorded; every process after that follows the decision it receives with the trace context
    (``traceparent``'s flag), so a recorded trace has all its spans and an unrecorded one none."""
    data = _tracing_config_map(rendered[overlay])["data"]
    trace_ids = [(i * (2**64 // 1000)) | (0x5EED << 64) for i in range(1000)]  # spread over the ratio's 64 bits
    with _sampler_of_a_process_with(data, clean_environ) as sampler:
        roots = sum(_decision(sampler, trace_id, None) for trace_id in trace_ids) / len(trace_ids)
        children_of_recorded = {_decision(sampler, trace_id, TraceFlags(TraceFlags.SAMPLED)) for trace_id in trace_ids}
        children_of_unrecorded = {
            _decision(sampler, trace_id, TraceFlags(TraceFlags.DEFAULT)) for trace_id in trace_ids
        }
    assert 0 < roots < 1, f"{overlay} records {roots:.0%} of the traces where they start: a fraction, not none or all"
    assert children_of_recorded == {True}, "a recorded trace goes on being recorded in every process"
    assert children_of_unrecorded == {False}, "an unrecorded trace stays unrecorded in every process"


@pytest.mark.parametrize("overlay", ALL_OVERLAYS)
def test_only_the_python_processes_of_a_traced_overlay_get_opentelemetry_variables(
    rendered: dict[str, Manifests], deployables: dict[str, Deployable], overlay: str
) -> None:
    """Without the component no process exports a span (nothing is recorded and no header added: tracing is off),
    and with it neither NATS nor PostgreSQL is handed variables it does not read."""
    manifests = rendered[overlay]
    traced = {_name(workload) for workload in manifests.workloads if _otel_variables(manifests, workload)}
    assert traced == (set(deployables) if overlay in TRACED_OVERLAYS else set())
    if overlay in UNTRACED_OVERLAYS:
        assert not [c for c in manifests.of_kind("ConfigMap") if any(k.startswith("OTEL_") for k in c.get("data", {}))]
