"""stylelocal.iam: the policy evaluation that the template's tests and the local S3 rely on, checked
against IAM's documented rules (explicit deny wins; conditions on absent keys; wildcards; the
IfExists and set qualifiers), and refusing what it does not implement."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stylelocal import iam, template
from stylelocal.iam import Request, UnsupportedPolicy, allows

BUCKET = "arn:aws:s3:::images"
LIST_UPLOADS = {
    "Effect": "Allow",
    "Action": ["s3:ListBucket"],
    "Resource": BUCKET,
    "Condition": {"StringLike": {"s3:prefix": ["uploads/*", "styles/*"]}},
}


def test_a_prefix_condition_allows_listing_only_under_its_prefixes():
    assert allows([LIST_UPLOADS], Request("s3:ListBucket", BUCKET, {"s3:prefix": "uploads/abc.png"}))
    assert allows([LIST_UPLOADS], Request("S3:listbucket", BUCKET, {"S3:Prefix": "styles/x.jpg"}))  # cases
    assert not allows([LIST_UPLOADS], Request("s3:ListBucket", BUCKET, {"s3:prefix": "private/input/a.png"}))
    assert not allows([LIST_UPLOADS], Request("s3:ListBucket", BUCKET))  # no prefix: the condition fails
    assert not allows([LIST_UPLOADS], Request("s3:ListBucket", f"{BUCKET}-other", {"s3:prefix": "uploads/a"}))
    assert not allows([LIST_UPLOADS], Request("s3:GetObject", f"{BUCKET}/uploads/a", {"s3:prefix": "uploads/a"}))


def test_an_explicit_deny_wins_and_nothing_is_allowed_by_default():
    get = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"{BUCKET}/*"}
    deny_http = {"Effect": "Deny", "Action": "s3:*", "Resource": [BUCKET, f"{BUCKET}/*"],
                 "Condition": {"Bool": {"aws:SecureTransport": "false"}}}  # fmt: skip
    assert allows([get, deny_http], Request("s3:GetObject", f"{BUCKET}/a", {"aws:SecureTransport": "true"}))
    assert not allows([get, deny_http], Request("s3:GetObject", f"{BUCKET}/a", {"aws:SecureTransport": "false"}))
    assert not allows([], Request("s3:GetObject", f"{BUCKET}/a"))


def test_absent_keys_follow_iams_rules():
    def holds(operator: str) -> bool:
        statement = {"Effect": "Allow", "Action": "x:Y", "Resource": "*", "Condition": {operator: {"k": "v"}}}
        return allows([statement], Request("x:Y", "r"))

    assert not holds("StringEquals")
    assert not holds("ArnLike")
    assert holds("StringEqualsIfExists")
    assert holds("StringNotEquals")  # "must not match": an absent key does not match
    assert holds("ForAllValues:StringEquals")
    assert not holds("ForAnyValue:StringEquals")


def test_set_qualifiers_over_several_values():
    statement = {"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": "*",
                 "Condition": {"ForAllValues:StringEquals": {"dynamodb:Attributes": ["jobId", "feed"]}}}  # fmt: skip
    assert allows([statement], Request("dynamodb:GetItem", "t", {"dynamodb:Attributes": ["jobId"]}))
    assert not allows([statement], Request("dynamodb:GetItem", "t", {"dynamodb:Attributes": ["jobId", "tokenHash"]}))


def test_resource_policies_match_the_principal():
    statement = {"Effect": "Allow", "Principal": {"Service": ["budgets.amazonaws.com"]}, "Action": "sns:Publish",
                 "Resource": "topic"}  # fmt: skip
    assert allows([statement], Request("sns:Publish", "topic", principal={"Service": "budgets.amazonaws.com"}))
    assert not allows([statement], Request("sns:Publish", "topic", principal={"Service": "events.amazonaws.com"}))
    assert not allows([statement], Request("sns:Publish", "topic", principal={"AWS": "arn:aws:iam::1:root"}))
    assert not allows([statement], Request("sns:Publish", "topic"))


@pytest.mark.parametrize(
    "statement",
    [
        {"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"},
        {"Effect": "Allow", "Action": "s3:*", "NotResource": "*"},
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": {"IpAddress": {"aws:SourceIp": "1.2.3.4"}}},
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": {"Sometimes:StringEquals": {"k": "v"}}},
    ],
)
def test_what_it_does_not_implement_is_refused_not_guessed(statement: dict):
    with pytest.raises(UnsupportedPolicy):
        allows([statement], Request("s3:GetObject", "r", {"aws:SourceIp": "1.2.3.4", "k": "v"}))


KEY_CHARS = st.sampled_from("abcxyz019-_./")


@given(prefix=st.text(KEY_CHARS, max_size=12), rest=st.text(KEY_CHARS, max_size=12), other=st.text(KEY_CHARS))
def test_a_star_pattern_is_a_prefix_test(prefix: str, rest: str, other: str):
    """StringLike "p*" holds exactly for values starting with p; `.` and the like are not special."""
    statement = {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": BUCKET,
                 "Condition": {"StringLike": {"s3:prefix": f"{prefix}*"}}}  # fmt: skip
    assert allows([statement], Request("s3:ListBucket", BUCKET, {"s3:prefix": prefix + rest}))
    assert allows([statement], Request("s3:ListBucket", BUCKET, {"s3:prefix": other})) == other.startswith(prefix)


def test_the_templates_principals_are_read_and_resolved():
    arns = {("ImagesBucket", "Arn"): BUCKET, ("JobsTable", "Arn"): "jobs", ("ResultsQueue", "Arn"): "q",
            ("RateLimitsTable", "Arn"): "rates", ("WorkQueue", "Arn"): "work",
            ("WorkersTable", "Arn"): "workers"}  # fmt: skip
    resolve = template.Resolver({"ImagesBucket": "images", "TransferStateMachine": "sm"}, arns, "us-east-1")
    worker = iam.identity_statements("WorkerJobRole", resolve)
    assert allows(worker, Request("s3:GetObject", f"{BUCKET}/styles/a.jpg"))
    assert not allows(worker, Request("s3:GetObject", f"{BUCKET}/private/output/a.jpg"))
    transfer = iam.identity_statements("TransferStyleFunction", resolve)
    assert allows(transfer, Request("s3:ListBucket", BUCKET, {"s3:prefix": "uploads/a.png"}))
    with pytest.raises(KeyError):
        iam.identity_statements("ImagesBucket", resolve)
