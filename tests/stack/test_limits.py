"""What keeps a public demo's bill bounded, against moto: TRANSFER_STYLE's per-connection and
per-address rate limits and its cap on jobs in flight, and the optional access key on $connect.
Every refusal is an ERROR that says when to try again, and starts nothing."""

from __future__ import annotations

import copy
import ipaddress
import re
import threading

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from styleservice.limits import IPV6_SITE_FACTOR, RateLimit, RateLimits, address_key, address_limits, wait_words
from styleservice.protocol import ProtocolError

from . import template
from .local_aws import LocalAws, event
from .routes_support import answer, executions, job_items, refusal, seed

FUNCTION = "TransferStyleFunction"
VALID = "transfer_style/valid_data_url.json"


def transfer(aws: LocalAws, connection: str = "conn-a=", source_ip: str = "192.0.2.10") -> dict:
    request = copy.deepcopy(event(VALID))
    request["requestContext"]["connectionId"] = connection
    request["requestContext"]["identity"]["sourceIp"] = source_ip
    return aws.invoke(FUNCTION, request)


def accepted(response: dict) -> bool:
    return answer(response)[0] == "TRANSFER_STYLE_ACCEPTED"


@pytest.fixture
def seeded(aws: LocalAws) -> LocalAws:
    seed(aws)
    return aws


def test_the_defaults_are_the_templates_parameters():
    parameters = template.load()["Parameters"]
    defaults = {name: parameters[name]["Default"] for name in (
        "JobsPerConnection", "ConnectionWindowMinutes", "JobsPerSourceIp", "SourceIpWindowMinutes", "MaxActiveJobs",
        "AccessKey",
    )}  # fmt: skip
    assert defaults == {"JobsPerConnection": 5, "ConnectionWindowMinutes": 10, "JobsPerSourceIp": 20,
                        "SourceIpWindowMinutes": 60, "MaxActiveJobs": 60, "AccessKey": ""}  # fmt: skip
    # one address cannot make the service busy for everyone: it may have a third of the cap at most
    assert defaults["JobsPerSourceIp"] * 3 <= defaults["MaxActiveJobs"]
    assert parameters["AccessKey"]["NoEcho"] is True
    variables = template.function(FUNCTION)["Environment"]["Variables"]
    for variable, parameter in {"JOBS_PER_CONNECTION": "JobsPerConnection", "JOBS_PER_SOURCE_IP": "JobsPerSourceIp",
                                "CONNECTION_WINDOW_MINUTES": "ConnectionWindowMinutes",
                                "SOURCE_IP_WINDOW_MINUTES": "SourceIpWindowMinutes",
                                "MAX_ACTIVE_JOBS": "MaxActiveJobs"}.items():  # fmt: skip
        assert variables[variable] == {"Ref": parameter}
    assert template.function("ConnectFunction")["Environment"]["Variables"]["ACCESS_KEY"] == {"Ref": "AccessKey"}


def test_a_connection_gets_its_allowance_then_an_error_saying_when_to_try_again(seeded: LocalAws):
    for _ in range(5):  # the default JobsPerConnection
        assert accepted(transfer(seeded))
    message = refusal(transfer(seeded))
    assert re.fullmatch(
        r"too many style transfers from this connection: at most 5 every 10 min; please try again in \d+ (s|min)",
        message,
    ), message
    assert len(job_items(seeded)) == len(executions(seeded)) == 5  # the refused one started nothing
    assert accepted(transfer(seeded, connection="conn-b="))  # another connection has its own allowance


def test_an_address_is_limited_across_its_connections(seeded: LocalAws):
    seeded.overrides["JOBS_PER_SOURCE_IP"] = "3"
    for n in range(3):
        assert accepted(transfer(seeded, connection=f"conn-{n}="))
    message = refusal(transfer(seeded, connection="conn-new="))
    assert message.startswith("too many style transfers from your network address: at most 3 every 60 min")
    assert len(executions(seeded)) == 3
    assert accepted(transfer(seeded, connection="conn-other=", source_ip="198.51.100.7"))


def counts(aws: LocalAws) -> dict[str, int]:
    """Each rate counter's count, by who it counts (its id without the window's start)."""
    items = aws.client("dynamodb").scan(TableName="RateLimitsTable")["Items"]
    return {item["id"]["S"].rsplit("#", 1)[0]: int(item["count"]["N"]) for item in items if "count" in item}


def test_a_job_the_address_refuses_spends_none_of_the_connections_allowance(seeded: LocalAws):
    seeded.overrides["JOBS_PER_CONNECTION"] = "2"
    seeded.overrides["JOBS_PER_SOURCE_IP"] = "1"
    assert accepted(transfer(seeded, source_ip="192.0.2.10"))
    for _ in range(3):  # refused by the address, again and again
        assert "from your network address" in refusal(transfer(seeded, source_ip="192.0.2.10"))
    assert counts(seeded)["connection#conn-a="] == 1  # only the job that started
    assert accepted(transfer(seeded, source_ip="198.51.100.7"))  # so the connection's second job is still there
    assert "from this connection: at most 2" in refusal(transfer(seeded, source_ip="203.0.113.9"))
    assert counts(seeded) == {"connection#conn-a=": 2, "address#192.0.2.10": 1, "address#198.51.100.7": 1,
                              "active": 2}  # fmt: skip
    assert len(executions(seeded)) == 2


def test_a_give_back_never_goes_below_zero_nor_makes_a_counter(aws: LocalAws, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint)
    limits = RateLimits(aws.refs["RateLimitsTable"])
    limit = RateLimit("this connection", 2, 600)
    limits.give_back(limit, "connection#nobody", 1_000.0)
    assert counts(aws) == {}
    limits.take(limit, "connection#someone", 1_000.0)
    limits.give_back(limit, "connection#someone", 1_000.0)
    limits.give_back(limit, "connection#someone", 1_000.0)
    assert counts(aws) == {"connection#someone": 0}


def test_ipv6_addresses_count_by_their_64_and_their_48():
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("192.0.2.10") == "192.0.2.10"
    assert address_key("::ffff:8.8.8.8") == "8.8.8.8"  # not '::/64', shared by every IPv4-mapped client
    assert [subject for _, subject in address_limits("2001:db8:1:2::1")] == [
        "address#2001:db8:1:2::/64", "network#2001:db8:1::/48"]  # fmt: skip
    assert [subject for _, subject in address_limits("::ffff:192.0.2.10")] == ["address#192.0.2.10"]


IPV4 = st.ip_addresses(v=4)
IPV6 = st.ip_addresses(v=6).filter(lambda a: a.ipv4_mapped is None)


@given(IPV4)
def test_an_ipv4_client_counts_as_itself_however_it_is_written(address: ipaddress.IPv4Address):
    assert address_key(str(address)) == address_key(f"::ffff:{address}") == str(address)
    assert address_limits(f"::ffff:{address}") == address_limits(str(address))
    assert len(address_limits(str(address))) == 1


@given(IPV6, st.integers(0, 2**64 - 1), st.integers(0, 2**80 - 1))
def test_an_ipv6_client_counts_by_its_64_and_its_48(address: ipaddress.IPv6Address, host: int, in_site: int):
    """Any address of the same /64 is the same client; any of the same /48 is the same site, whose
    limit is IPV6_SITE_FACTOR times the address's; another /64 is another client of that site."""
    same_64 = ipaddress.IPv6Address(int(address) >> 64 << 64 | host)
    same_48 = ipaddress.IPv6Address(int(address) >> 80 << 80 | in_site)
    assume(same_64.ipv4_mapped is None and same_48.ipv4_mapped is None)  # ::ffff:0:0/96 is IPv4's, in ::/64
    assert address_limits(str(same_64)) == address_limits(str(address))
    (one, client), (site, network) = address_limits(str(address))
    assert client == f"address#{ipaddress.ip_network(f'{address}/64', strict=False)}"
    assert network == f"network#{ipaddress.ip_network(f'{address}/48', strict=False)}"
    assert site.jobs == one.jobs * IPV6_SITE_FACTOR
    assert site.window_seconds == one.window_seconds
    assert address_limits(str(same_48))[1][1] == network
    assert (address_limits(str(same_48))[0][1] == client) == (int(same_48) >> 64 == int(address) >> 64)


@given(st.text(max_size=60))
def test_any_source_text_has_a_counter(text: str):
    assert address_limits(text)[0][1] == f"address#{address_key(text)}"


def test_a_48_gets_a_few_allowances_not_one_per_64(seeded: LocalAws):
    """A /56 or /48 holder used to get 256 or 65,536 allowances, one per /64."""
    seeded.overrides["JOBS_PER_SOURCE_IP"] = "1"
    seeded.overrides["JOBS_PER_CONNECTION"] = "0"
    started = [accepted(transfer(seeded, source_ip=f"2001:db8:77:{n:x}::1")) for n in range(IPV6_SITE_FACTOR + 2)]
    assert started == [True] * IPV6_SITE_FACTOR + [False, False]
    message = refusal(transfer(seeded, source_ip="2001:db8:77:ff::1"))
    assert message.startswith(f"too many style transfers from your network: at most {IPV6_SITE_FACTOR} every 60 min")
    assert "from your network address" in refusal(transfer(seeded, source_ip="2001:db8:77:0::2"))  # its own /64
    assert accepted(transfer(seeded, source_ip="2001:db8:78::1"))  # another site
    # a refusal by the /48 gave back what the /64 took: a fresh /64 of the site is still refused by the
    # site, and its own counter says it was never counted
    assert counts(seeded)["address#2001:db8:77:ff::/64"] == 0


def test_a_busy_service_refuses_and_starts_nothing_until_a_job_ends(seeded: LocalAws):
    seeded.overrides["MAX_ACTIVE_JOBS"] = "2"
    assert accepted(transfer(seeded, connection="a="))
    assert accepted(transfer(seeded, connection="b="))
    message = refusal(transfer(seeded, connection="c="))
    assert message == (
        "the service is busy: 2 jobs are waiting or running, the most it takes at once; "
        "please try again in a few minutes"
    )
    assert len(job_items(seeded)) == 2
    assert len(executions(seeded)) == 2
    ended = event("job_ended/succeeded.json")  # Step Functions' event, as EventBridge delivers it
    ended["detail"]["name"] = job_items(seeded)[0]["jobId"]["S"]
    seeded.invoke("JobEndedFunction", ended)
    assert accepted(transfer(seeded, connection="c="))  # and c's allowance was not spent by the refusal
    assert counts(seeded)["active"] == 2


def test_jobs_arriving_together_never_pass_the_cap(seeded: LocalAws):
    """Counting the running executions and then starting one let three jobs through a cap of one;
    admission is now one conditional transaction."""
    seeded.overrides["MAX_ACTIVE_JOBS"] = "1"
    handler = seeded.handler(FUNCTION)
    answers: list[dict] = []
    with seeded._as_function(FUNCTION):
        requests_ = []
        for index in range(3):
            request = copy.deepcopy(event(VALID))
            request["requestContext"]["connectionId"] = f"racer{index}="
            requests_.append(request)
        from .local_aws import LambdaContext

        threads = [threading.Thread(target=lambda r=r: answers.append(handler(r, LambdaContext(FUNCTION))))
                   for r in requests_]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(accepted(a) for a in answers) == [False, False, True]
    assert len(executions(seeded)) == 1
    assert counts(seeded)["active"] == 1
    busy = [refusal(a) for a in answers if not accepted(a)]
    assert all(text.startswith("the service is busy: 1 jobs are waiting or running") for text in busy)
    # admission comes first: the refused ones never touched their connections' allowances
    spent = {k: v for k, v in counts(seeded).items() if k.startswith("connection#racer")}
    assert list(spent.values()) == [1]


def test_counters_that_cannot_be_written_start_nothing(seeded: LocalAws):
    seeded.overrides["RATE_LIMITS_TABLE"] = "NoSuchTable"  # DynamoDB refuses the count
    assert refusal(transfer(seeded)) == "the service could not start the job; please try again"
    assert job_items(seeded) == []
    assert executions(seeded) == []


def test_zero_turns_a_rate_limit_off(seeded: LocalAws):
    seeded.overrides["JOBS_PER_CONNECTION"] = "0"
    assert all(accepted(transfer(seeded)) for _ in range(7))


def test_a_window_ends_and_its_counter_expires(aws: LocalAws, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint)
    limits = RateLimits(aws.refs["RateLimitsTable"])
    limit = RateLimit("this connection", 2, 600)
    start = 1_800_000_000  # a multiple of 600
    limits.take(limit, "c", now=start + 10)
    limits.take(limit, "c", now=start + 20)
    with pytest.raises(ProtocolError, match=r"please try again in 10 min$"):
        limits.take(limit, "c", now=start + 30)
    with pytest.raises(ProtocolError, match=r"please try again in 5 s$"):
        limits.take(limit, "c", now=start + 595)
    limits.take(limit, "c", now=start + 600)  # the next window
    items = aws.client("dynamodb").scan(TableName=aws.refs["RateLimitsTable"])["Items"]
    expiry = {i["id"]["S"]: int(i["expiresAt"]["N"]) for i in items}
    assert expiry == {f"c#{start}": start + 660, f"c#{start + 600}": start + 1260}  # TTL just past each window


def test_wait_words():
    assert [wait_words(s) for s in (0.2, 59, 89, 90, 3600)] == ["1 s", "59 s", "89 s", "2 min", "60 min"]


# --- the access key -------------------------------------------------------------------------------


def connect(aws: LocalAws, key: str | None) -> dict:
    request = copy.deepcopy(event("connect/connect.json"))
    request["queryStringParameters"] = None if key is None else {"key": key}
    return aws.invoke("ConnectFunction", request)


def connections(aws: LocalAws) -> int:
    return len(aws.client("dynamodb").scan(TableName=aws.refs["ConnectionsTable"])["Items"])


def test_without_an_access_key_anyone_connects(aws: LocalAws):
    assert connect(aws, None) == {"statusCode": 200}
    assert connections(aws) == 1


def test_with_an_access_key_only_its_holders_connect(aws: LocalAws):
    aws.overrides["ACCESS_KEY"] = "s3cret-Key_1"
    assert connect(aws, None) == {"statusCode": 401}
    assert connect(aws, "wrong") == {"statusCode": 401}
    assert connect(aws, "s3cret-Key_") == {"statusCode": 401}
    assert connections(aws) == 0  # a refused client is never remembered (no broadcasts to it)
    assert connect(aws, "s3cret-Key_1") == {"statusCode": 200}
    assert connections(aws) == 1


def test_rate_counters_are_small_and_expire():
    table = template.resources("AWS::DynamoDB::Table")["RateLimitsTable"]["Properties"]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
