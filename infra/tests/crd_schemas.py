"""Offline validation of custom resources (Gateway API, CloudNativePG, GKE's policies) against the schemas vendored
in infra/schemas (sources.json pins each one).

A CRD's ``openAPIV3Schema`` is turned into a JSON Schema the way the API server reads it: ``nullable`` admits
null, ``x-kubernetes-int-or-string`` an integer or a string, and an object that declares its properties admits no
other field unless ``x-kubernetes-preserve-unknown-fields`` says so (what ``kubectl apply``'s strict field
validation reports). Not checked offline: the CEL rules (``x-kubernetes-validations``), which only the API
server evaluates, and ``format``.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"

# metadata of any object: what the API server insists on for a namespaced object created from a manifest.
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "maxLength": 253, "pattern": DNS_SUBDOMAIN},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "namespace": {"type": "string"},
    },
}


@dataclass(frozen=True)
class Source:
    file: str
    project: str
    repository: str
    ref: str
    commit: str
    path: str
    sha256: str
    kind: str = ""  # for a JSON Schema file (a CRD names its kind itself)

    @property
    def location(self) -> Path:
        return SCHEMAS / self.file

    def intact(self) -> bool:
        return hashlib.sha256(self.location.read_bytes()).hexdigest() == self.sha256


def sources() -> list[Source]:
    data = json.loads((SCHEMAS / "sources.json").read_text())
    return [Source(**{k: v for k, v in entry.items() if k in Source.__dataclass_fields__}) for entry in data["sources"]]


def _structural(schema: Any, *, strict: bool = True) -> Any:
    """An openAPIV3Schema node as a JSON Schema (draft 7) node. ``strict``: the node defines structure (unknown
    fields are errors); below oneOf/anyOf/allOf/not it only adds value checks to a structure defined elsewhere."""
    if isinstance(schema, list):
        return [_structural(item, strict=strict) for item in schema]
    if not isinstance(schema, dict):
        return schema
    node = {}
    for key, value in schema.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "format"):
            continue
        if key in ("oneOf", "anyOf", "allOf", "not"):
            node[key] = _structural(value, strict=False)
        elif key == "properties":
            node[key] = {name: _structural(sub, strict=strict) for name, sub in value.items()}
        else:
            node[key] = _structural(value, strict=strict)
    if schema.get("x-kubernetes-int-or-string"):
        node.pop("type", None)
        node = {"anyOf": [{"type": "integer"}, {"type": "string"}], **node}
    preserve = schema.get("x-kubernetes-preserve-unknown-fields")
    if strict and "properties" in schema and "additionalProperties" not in schema and not preserve:
        node["additionalProperties"] = False
    if schema.get("nullable") and "type" in node:
        node["type"] = [node["type"], "null"]
    return node


def _with_metadata(schema: dict[str, Any]) -> dict[str, Any]:
    schema = copy.deepcopy(schema)
    schema.setdefault("properties", {})["metadata"] = METADATA
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    schema["additionalProperties"] = False
    return schema


@cache
def validators() -> dict[tuple[str, str], Draft7Validator]:
    """(apiVersion, kind) -> a validator, for every version a vendored CRD serves and every catalog schema."""
    result = {}
    for source in sources():
        if source.file.endswith(".json"):  # a JSON Schema already (datreeio/CRDs-catalog: <group>/<kind>_<version>)
            group = Path(source.path).parent.name
            version = Path(source.path).stem.rpartition("_")[2]
            schema = json.loads(source.location.read_text())
            result[(f"{group}/{version}", source.kind)] = Draft7Validator(_with_metadata(schema))
            continue
        crd = yaml.safe_load(source.location.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served", True):
                schema = _structural(version["schema"]["openAPIV3Schema"])
                result[(f"{group}/{version['name']}", kind)] = Draft7Validator(_with_metadata(schema))
    return result


def has_schema(obj: dict[str, Any]) -> bool:
    return (obj.get("apiVersion"), obj.get("kind")) in validators()


def errors(obj: dict[str, Any]) -> list[str]:
    """Every schema violation of a custom resource ([] when valid); KeyError when no schema is vendored for it."""
    validator = validators()[(obj["apiVersion"], obj["kind"])]
    found: list[ValidationError] = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in found]
