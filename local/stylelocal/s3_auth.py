"""What S3 checks on a presigned POST and a presigned GET, which moto 5.2.5 does not check.

moto stores any browser-style POST whatever its policy says (a larger file, another
Content-Type, another key, a forged or missing signature) and serves a presigned GET whose
signature was tampered with. The local stack would then pass a wrong policy that AWS refuses.
These checks make the local bucket as strict as S3 (moto_fixes' `s3_presigned` applies them):

- a POST upload (`check_post`): the signature is the SigV4 HMAC of the policy, made with a key
  that the credential names; the policy has not expired; every form field but `policy`,
  `x-amz-signature`, `file` and `x-ignore-*` is allowed by a condition; every condition holds
  (exact match, `eq`, `starts-with`, `content-length-range` on the file's size, the bucket);
- a presigned GET or HEAD (`check_presigned_query`): the signature of the request as received,
  recomputed with botocore's own SigV4 query signer, and the link's expiry.

The signatures are computed by botocore (the code that signs them), not by hand. The secrets are
the local stack's own fake credentials: nothing here knows or needs a real key.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit
from xml.sax.saxutils import escape

from botocore.auth import S3SigV4PostAuth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ALGORITHM = "AWS4-HMAC-SHA256"
# form fields that the policy does not list (S3's rule for browser-based uploads)
_UNLISTED = {"policy", "x-amz-signature", "file"}
_MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4 presigned URLs last at most a week
MISMATCH = "The request signature we calculated does not match the signature you provided."


class Refused(Exception):  # noqa: N818 - S3's answer, not a failure of this code
    """What S3 answers: an HTTP status, its error code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def xml(self) -> str:
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{self.code}</Code><Message>{escape(self.message)}</Message></Error>"
        )


def _denied(message: str) -> Refused:
    return Refused(403, "AccessDenied", message)


def _secret(access_key: str, secrets: Mapping[str, str]) -> str:
    if access_key not in secrets:
        raise Refused(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
    return secrets[access_key]


def _scope(credential: str) -> tuple[str, str, str, str]:
    """(access key, date, region, service) of a SigV4 credential; Refused if it is not one."""
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or parts[3] != "s3":
        raise _denied(f"malformed credential {credential!r}")
    return parts[0], parts[1], parts[2], parts[3]


def _time(stamp: str) -> datetime:
    try:
        return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise _denied(f"malformed date {stamp!r}") from None


def check_post(
    form: Mapping[str, str], size: int, bucket: str, secrets: Mapping[str, str], now: datetime | None = None
) -> None:
    """Refused unless S3 would store this browser-based upload (form fields, the file's size)."""
    now = now or datetime.now(UTC)
    fields = {name.lower(): value for name, value in form.items()}
    for required in ("policy", "x-amz-signature", "x-amz-algorithm", "x-amz-credential", "x-amz-date"):
        if required not in fields:
            raise _denied(f"Bucket POST must contain a field named '{required}'.")
    if fields["x-amz-algorithm"] != ALGORITHM:
        raise _denied("only AWS4-HMAC-SHA256 is accepted")
    access_key, date, region, service = _scope(fields["x-amz-credential"])
    if not fields["x-amz-date"].startswith(date):
        raise _denied("the credential's date is not x-amz-date's")
    credentials = Credentials(access_key, _secret(access_key, secrets))
    request = AWSRequest()
    request.context["timestamp"] = fields["x-amz-date"]
    expected = S3SigV4PostAuth(credentials, service, region).signature(fields["policy"], request)
    if not hmac.compare_digest(expected, fields["x-amz-signature"]):
        raise Refused(403, "SignatureDoesNotMatch", MISMATCH)
    try:
        policy = json.loads(base64.b64decode(fields["policy"], validate=True))
        expiration = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
        conditions = policy["conditions"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise Refused(400, "InvalidPolicyDocument", "Invalid Policy: Invalid JSON.") from None
    if now >= expiration:
        raise _denied("Invalid according to Policy: Policy expired.")
    _check_conditions(conditions, {**fields, "bucket": bucket}, size)


def _check_conditions(conditions: list[Any], fields: dict[str, str], size: int) -> None:
    allowed = {"bucket"}
    for condition in conditions:
        if isinstance(condition, dict) and len(condition) == 1:
            ((name, value),) = condition.items()
            condition = ["eq", f"${name}", value]
        if not (isinstance(condition, list) and len(condition) == 3):
            raise Refused(400, "InvalidPolicyDocument", f"Invalid Policy: Invalid Condition: {condition!r}")
        operator, target, value = condition
        operator = str(operator).lower()
        if operator == "content-length-range":
            if not int(target) <= size <= int(value):
                too = "EntityTooLarge" if size > int(value) else "EntityTooSmall"
                raise Refused(400, too, f"Your proposed upload is {size} bytes, outside {target}..{value}")
            continue
        name = str(target).removeprefix("$").lower()
        allowed.add(name)
        given = fields.get(name, "")
        if operator not in ("eq", "starts-with"):
            raise Refused(400, "InvalidPolicyDocument", f"Invalid Policy: Invalid Condition: {condition!r}")
        if not (given == value if operator == "eq" else given.startswith(str(value))):
            raise _denied(f"Invalid according to Policy: Policy Condition failed: {json.dumps(condition)}")
    for name in fields:
        if name not in allowed and name not in _UNLISTED and not name.startswith("x-ignore-"):
            raise _denied(f"Invalid according to Policy: Extra input fields: {name}")


def check_presigned_query(
    method: str, url: str, headers: Mapping[str, str], secrets: Mapping[str, str], now: datetime | None = None
) -> None:
    """Refused unless the SigV4 query signature of this request (as received) is right and live."""
    now = now or datetime.now(UTC)
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    given = dict(query)
    if given.get("X-Amz-Algorithm") != ALGORITHM:
        raise _denied("only AWS4-HMAC-SHA256 query signatures are accepted")
    for required in ("X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Signature"):
        if required not in given:
            raise Refused(400, "AuthorizationQueryParametersError", f"the query must hold {required}")
    access_key, date, region, service = _scope(given["X-Amz-Credential"])
    signed_at = _time(given["X-Amz-Date"])
    try:
        expires = int(given["X-Amz-Expires"])
    except ValueError:
        raise Refused(400, "AuthorizationQueryParametersError", "X-Amz-Expires must be a number") from None
    if not 0 < expires <= _MAX_PRESIGN_SECONDS:
        raise Refused(400, "AuthorizationQueryParametersError", "X-Amz-Expires must be 1..604800")
    if now > signed_at + timedelta(seconds=expires):
        raise _denied("Request has expired")
    lower = {name.lower(): value for name, value in headers.items()}
    signed = given["X-Amz-SignedHeaders"].split(";")
    unsigned = [(name, value) for name, value in query if name != "X-Amz-Signature"]
    request = AWSRequest(
        method=method,
        url=f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(unsigned, quote_via=quote)}",
        headers={name: lower.get(name, "") for name in signed},
    )
    request.context["timestamp"] = given["X-Amz-Date"]
    credentials = Credentials(access_key, _secret(access_key, secrets), given.get("X-Amz-Security-Token"))
    signer = S3SigV4QueryAuth(credentials, service, region, expires=expires)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if not hmac.compare_digest(expected, given["X-Amz-Signature"]) or not given["X-Amz-Date"].startswith(date):
        raise Refused(403, "SignatureDoesNotMatch", MISMATCH)
