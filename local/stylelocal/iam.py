"""IAM policy evaluation, for the parts of template.yaml whose behaviour AWS decides from a policy
and that the stack's tests and the local stack must get right without AWS:

- whether a principal's identity policy allows an action on a resource in a request's context
  (the local S3 answers a missing key 404 or 403 from the caller's s3:ListBucket, as S3 does);
- whether a resource policy (the alert topic's) lets a service principal act, given the request's
  aws:SourceArn and aws:SourceAccount.

`allows(statements, request)` follows IAM's evaluation within one policy: an explicit Deny wins,
then any Allow, else the implicit deny. A statement applies when its Principal (resource policies),
Action and Resource match the request and every one of its Conditions holds. Supported: Action and
Resource patterns with `*` and `?` (actions case-insensitive); the condition operators
StringEquals, StringNotEquals, StringLike, StringNotLike, ArnEquals, ArnLike, ArnNotEquals,
ArnNotLike and Bool, each also with IfExists, and the ForAllValues:/ForAnyValue: set qualifiers;
condition keys case-insensitive. Anything else (NotAction, NotResource, NotPrincipal, another
operator) raises UnsupportedPolicy rather than being misread. Statements must already be resolved
(no intrinsic functions: stylelocal.template.Resolver resolves them).

What this does not model: policies of other kinds (SCPs, permission boundaries, session policies),
the bucket policy in identity decisions (its only rule for the functions' roles denies plain HTTP,
which every local request is), and policy variables (${aws:username}); the template uses none.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from . import template


class UnsupportedPolicy(ValueError):  # noqa: N818 - names what it is, as ValueError does
    """A policy element this evaluator does not implement (it refuses to guess)."""


@dataclass(frozen=True)
class Request:
    """One request as IAM sees it. `context` holds the condition keys the request carries
    (aws:SourceArn, s3:prefix, ...; a key may have several values). `principal` is the caller as a
    resource policy names it ({"Service": "cloudwatch.amazonaws.com"}, {"AWS": "<arn>"}); identity
    policies have no Principal element and ignore it."""

    action: str
    resource: str
    context: Mapping[str, str | Sequence[str]] = field(default_factory=dict)
    principal: Mapping[str, str] | None = None


def allows(statements: Iterable[Mapping[str, Any]], request: Request) -> bool:
    """True when the statements allow the request: some Allow applies and no Deny does."""
    allowed = False
    for statement in statements:
        if not applies(statement, request):
            continue
        if statement["Effect"] == "Deny":
            return False
        allowed = allowed or statement["Effect"] == "Allow"
    return allowed


def applies(statement: Mapping[str, Any], request: Request) -> bool:
    for unsupported in ("NotAction", "NotResource", "NotPrincipal"):
        if unsupported in statement:
            raise UnsupportedPolicy(f"{unsupported} is not supported: {statement}")
    if "Principal" in statement and not _principal_matches(statement["Principal"], request.principal):
        return False
    if not any(_matches(pattern, request.action, ignore_case=True) for pattern in _as_list(statement["Action"])):
        return False
    if not any(_matches(pattern, request.resource) for pattern in _as_list(statement.get("Resource", "*"))):
        return False
    return all(
        _condition_holds(operator, key, expected, request.context)
        for operator, tests in statement.get("Condition", {}).items()
        for key, expected in tests.items()
    )


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@cache
def _pattern(glob: str, ignore_case: bool) -> re.Pattern[str]:
    text = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
    return re.compile(text, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def _matches(glob: str, value: str, ignore_case: bool = False) -> bool:
    return _pattern(str(glob), ignore_case).fullmatch(value) is not None


def _principal_matches(principal: Any, caller: Mapping[str, str] | None) -> bool:
    if principal == "*":
        return True
    if caller is None or not isinstance(principal, dict):
        return False
    return any(
        kind in caller and (value == "*" or caller[kind] in _as_list(value)) for kind, value in principal.items()
    )


_OPERATORS = {
    "StringEquals": lambda expected, value: expected == value,
    "StringLike": lambda expected, value: _matches(expected, value),
    "ArnEquals": lambda expected, value: expected == value,
    "ArnLike": lambda expected, value: _matches(expected, value),
    "Bool": lambda expected, value: str(expected).lower() == str(value).lower(),
}
_NEGATED = {"StringNotEquals": "StringEquals", "StringNotLike": "StringLike", "ArnNotEquals": "ArnEquals",
            "ArnNotLike": "ArnLike"}  # fmt: skip


def _condition_holds(operator: str, key: str, expected: Any, context: Mapping[str, str | Sequence[str]]) -> bool:
    qualifier, _, name = operator.rpartition(":")
    if_exists = name.endswith("IfExists")
    name = name.removesuffix("IfExists")
    negated = name in _NEGATED
    test = _OPERATORS.get(_NEGATED.get(name, name))
    if test is None or qualifier not in ("", "ForAllValues", "ForAnyValue"):
        raise UnsupportedPolicy(f"the condition operator {operator} is not supported")
    found = {k.lower(): v for k, v in context.items()}.get(key.lower())
    if found is None:
        # IAM: a key the request does not carry matches nothing, so the condition fails, except
        # that ...IfExists, a negated operator ("not matched" holds) and ForAllValues hold
        return if_exists or negated or qualifier == "ForAllValues"
    values = [str(v) for v in _as_list(found)] if not isinstance(found, str) else [found]
    wanted = [str(e) for e in _as_list(expected)]

    def one(value: str) -> bool:
        hit = any(test(e, value) for e in wanted)
        return not hit if negated else hit

    if qualifier == "ForAllValues":
        return all(one(v) for v in values)
    return any(one(v) for v in values)  # a single value, or ForAnyValue


# --- the template's principals ---------------------------------------------------------------------


def identity_statements(logical_id: str, resolve: template.Resolver) -> list[dict[str, Any]]:
    """The resolved statements of a principal's identity policy in template.yaml: a function's
    inline `Policies` (SAM), or an AWS::IAM::Role's `Policies`."""
    found = template.resources().get(logical_id)
    if found is None:
        raise KeyError(f"no resource {logical_id} in template.yaml")
    if found["Type"] == "AWS::Serverless::Function":
        documents = template.function(logical_id).get("Policies", [])
    elif found["Type"] == "AWS::IAM::Role":
        documents = [p["PolicyDocument"] for p in found["Properties"].get("Policies", [])]
    else:
        raise KeyError(f"{logical_id} is a {found['Type']}, not a function or a role")
    statements = []
    for document in documents:
        if not isinstance(document, dict) or "Statement" not in document:
            raise UnsupportedPolicy(f"{logical_id}: only inline statements are modelled, not {document!r}")
        statements += [resolve(s) for s in _as_list(document["Statement"])]
    return statements
