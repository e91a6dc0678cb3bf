"""template.yaml as data: CloudFormation's short tags (!Ref, !GetAtt, !Sub, ...) become their
long forms, and intrinsic values resolve against what the local AWS created."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"


class _Loader(yaml.SafeLoader):
    pass


def _tag(name: str) -> Callable:
    def construct(loader: yaml.Loader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if name == "Fn::GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {name: value}

    return construct


for _short, _long in {
    "Ref": "Ref", "GetAtt": "Fn::GetAtt", "Sub": "Fn::Sub", "Join": "Fn::Join", "If": "Fn::If",
    "Equals": "Fn::Equals", "Not": "Fn::Not", "And": "Fn::And", "Or": "Fn::Or", "Select": "Fn::Select",
    "Split": "Fn::Split", "GetAZs": "Fn::GetAZs", "FindInMap": "Fn::FindInMap", "Condition": "Condition",
    "Base64": "Fn::Base64", "ImportValue": "Fn::ImportValue",
}.items():  # fmt: skip
    _Loader.add_constructor(f"!{_short}", _tag(_long))


@cache
def load() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=_Loader)


def resources(kind: str | None = None) -> dict[str, dict[str, Any]]:
    found = load()["Resources"]
    return {name: r for name, r in found.items() if kind is None or r["Type"] == kind}


def function(logical_id: str) -> dict[str, Any]:
    """A function's properties with the template's Globals applied, as SAM does."""
    props = dict(resources("AWS::Serverless::Function")[logical_id]["Properties"])
    globals_ = load().get("Globals", {}).get("Function", {})
    merged = {**globals_, **props}
    variables = {
        **globals_.get("Environment", {}).get("Variables", {}),
        **props.get("Environment", {}).get("Variables", {}),
    }
    merged["Environment"] = {"Variables": variables}
    return merged


class Resolver:
    """Evaluates intrinsic functions: `refs` gives each resource's or parameter's Ref value and
    `attributes` its GetAtt values; parameters fall back to their defaults."""

    def __init__(self, refs: dict[str, str], attributes: dict[tuple[str, str], str], region: str) -> None:
        parameters = {name: str(p.get("Default", "")) for name, p in load().get("Parameters", {}).items()}
        self.refs = {**parameters, "AWS::Region": region, "AWS::AccountId": "123456789012",
                     "AWS::Partition": "aws", "AWS::StackName": "local", **refs}  # fmt: skip
        self.attributes = attributes

    def __call__(self, value: Any) -> Any:
        if isinstance(value, dict) and len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.refs[arg]
            if key == "Fn::GetAtt":
                return self.attributes[(arg[0], arg[1])]
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::Join":
                return arg[0].join(str(self(v)) for v in arg[1])
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v) for v in value]
        return value

    def _sub(self, arg: Any) -> str:
        text, local = (arg, {}) if isinstance(arg, str) else (arg[0], {k: self(v) for k, v in arg[1].items()})

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in local:
                return str(local[name])
            if "." in name and not name.startswith("AWS::"):
                resource, attribute = name.split(".", 1)
                return str(self.attributes[(resource, attribute)])
            return str(self.refs[name])

        return re.sub(r"\$\{([^}!]+)\}", replace, text)
