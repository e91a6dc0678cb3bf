"""template.yaml as data: CloudFormation's short tags (!Ref, !GetAtt, !Sub, ...) become their long
forms, and intrinsic functions resolve against what the local AWS created.

The local stack and the stack's tests read the template through this module, so that what runs
locally is built from the same file that SAM deploys.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]  # local/stylelocal/template.py -> the repository
TEMPLATE = ROOT / "template.yaml"
ACCOUNT_ID = "123456789012"  # moto's default account


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
    """The template's resources (logical id -> resource), all or those of one type."""
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


def parameter_defaults() -> dict[str, Any]:
    """Each parameter's default as its Ref gives it: a list for CommaDelimitedList, else a string
    ("" where the template has no default)."""
    defaults: dict[str, Any] = {}
    for name, parameter in load().get("Parameters", {}).items():
        value = str(parameter.get("Default", ""))
        defaults[name] = [v.strip() for v in value.split(",")] if parameter["Type"] == "CommaDelimitedList" else value
    return defaults


class Resolver:
    """Evaluates intrinsic functions: `refs` gives each resource's or parameter's Ref value and
    `attributes` its GetAtt values; parameters fall back to their defaults. Conditions (Fn::If,
    Fn::Equals, Fn::Not, Fn::And, Fn::Or) are evaluated from the template's Conditions section."""

    def __init__(self, refs: dict[str, Any], attributes: dict[tuple[str, str], Any], region: str) -> None:
        self.region = region
        self.refs = {**parameter_defaults(), "AWS::Region": region, "AWS::AccountId": ACCOUNT_ID,
                     "AWS::Partition": "aws", "AWS::StackName": "local", "AWS::URLSuffix": "amazonaws.com",
                     **refs}  # fmt: skip
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
                return arg[0].join(str(self(v)) for v in self(arg[1]))
            if key == "Fn::If":
                name, when_true, when_false = arg
                return self(when_true if self.condition(name) else when_false)
            if key in ("Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or", "Condition"):
                return self._boolean(key, arg)
            if key == "Fn::Select":
                return self(arg[1])[int(self(arg[0]))]
            if key == "Fn::Split":
                return str(self(arg[1])).split(arg[0])
            if key == "Fn::GetAZs":
                return [f"{self.region}{zone}" for zone in "abcdef"]
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v) for v in value]
        return value

    def condition(self, name: str) -> bool:
        """One of the template's Conditions, evaluated."""
        return bool(self(load().get("Conditions", {})[name]))

    def _boolean(self, key: str, arg: Any) -> bool:
        if key == "Condition":
            return self.condition(arg)
        if key == "Fn::Equals":
            left, right = (self(v) for v in arg)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not self(arg[0])
        if key == "Fn::And":
            return all(self(v) for v in arg)
        return any(self(v) for v in arg)  # Fn::Or

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
