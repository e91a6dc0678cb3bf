"""The local WebSocket gateway with real clients (websockets, boto3's apigatewaymanagementapi,
plain HTTP) in front of the template's real functions, against moto."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import pytest
import requests
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayWebSocketConnectEventModel,
    APIGatewayWebSocketDisconnectEventModel,
    APIGatewayWebSocketMessageEventModel,
)
from stylelocal import template
from stylelocal.gateway import (
    CONNECTIONS_SECRET_HEADER,
    CONNECTIONS_SECRET_VARIABLE,
    SECURITY_HEADERS,
    Api,
    Gateway,
    Route,
    api_from_template,
)
from styleservice import connections_api
from styleservice.connections_api import management_client
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from . import runtime_fixtures
from .runtime_fixtures import RecordingRuntime, probe_function, started, wait_for

gateway, logs, recording, site = (
    runtime_fixtures.gateway,
    runtime_fixtures.logs,
    runtime_fixtures.recording,
    runtime_fixtures.site,
)  # fixtures

CONNECTION_ID = re.compile(r"^[A-Za-z0-9_-]{15}=$")  # API Gateway's shape, e.g. L0SM9cOFvHcCIhw=
KB = 1024


def stored_connections(aws) -> set[str]:
    items = aws.client("dynamodb").scan(TableName="ConnectionsTable")["Items"]
    return {item["connectionId"]["S"] for item in items}


def management(gateway: Gateway, secret: str | None = None) -> Any:
    """boto3's management client as the functions make it (styleservice.connections_api), with the
    gateway's secret unless another is given ("" for none)."""
    return management_client(gateway.management_endpoint, gateway.management_secret if secret is None else secret)


def authorised(gateway: Gateway) -> dict[str, str]:
    return {CONNECTIONS_SECRET_HEADER: gateway.management_secret}


def ask(ws: ClientConnection, request: dict[str, Any] | str) -> dict[str, Any]:
    ws.send(request if isinstance(request, str) else json.dumps(request))
    return json.loads(ws.recv(timeout=15))


def only_connection(gateway: Gateway) -> str:
    (connection_id,) = wait_for(gateway.connection_ids)
    return connection_id


def close_code(ws: ClientConnection) -> int | None:
    """Wait for the server to close the connection; the code it sent."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            ws.recv(timeout=10)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
    raise AssertionError("the connection stayed open")


# --- routes -----------------------------------------------------------------------------------


def test_routes_and_their_functions_come_from_the_template():
    api = api_from_template()
    assert api.logical_id == "WebSocketApi"
    assert api.selection_path == ("action",)
    assert {key: (r.function, r.two_way) for key, r in api.routes.items()} == {
        "$connect": ("ConnectFunction", False),
        "$disconnect": ("DisconnectFunction", False),
        "$default": ("DefaultFunction", True),
        "TRANSFER_STYLE": ("TransferStyleFunction", True),
        "REQUEST_UPLOAD": ("RequestUploadFunction", True),
        "LIST_STYLES": ("ListStylesFunction", True),
        "LIST_IMAGES": ("ListImagesFunction", True),
        "GET_JOB": ("GetJobFunction", True),
        "GET_SERVICE": ("GetServiceFunction", True),
        "PREVIEW_STYLES": ("PreviewStylesFunction", True),
        "DELETE_JOB": ("DeleteJobFunction", True),
        "GET_IMAGE": ("GetImageFunction", True),
    }
    assert api.select('{"action": "LIST_STYLES"}') == "LIST_STYLES"
    for body in ('{"action": "NOPE"}', '{"action": 5}', "[1]", "not json", "{}", '{"action": "$connect"}'):
        assert api.select(body) == "$default"


# --- $connect and $disconnect --------------------------------------------------------------------


def test_connect_and_disconnect_run_the_real_functions(aws, gateway, recording):
    before = int(time.time() * 1000)
    with connect(f"{gateway.ws_url}?client=test&client=again", user_agent_header="pytest-client") as ws:
        connection_id = only_connection(gateway)
        assert CONNECTION_ID.match(connection_id)
        assert stored_connections(aws) == {connection_id}  # ConnectFunction wrote it
        ws.send("{}")  # keep the connection busy for a moment
        ws.recv(timeout=10)
    assert wait_for(lambda: not stored_connections(aws))  # DisconnectFunction removed it

    (connect_event,) = recording.events_of("ConnectFunction")
    parsed = APIGatewayWebSocketConnectEventModel.model_validate(connect_event)
    context = parsed.request_context
    assert context.connection_id == connection_id
    assert context.event_type == "CONNECT"
    assert context.route_key == "$connect"
    assert context.stage == "local"
    assert context.api_id == "localws"
    assert context.domain_name == f"127.0.0.1:{gateway.port}"
    assert str(context.identity.source_ip) == "127.0.0.1/32"
    assert context.identity.user_agent == "pytest-client"
    assert connect_event["requestContext"]["requestTimeEpoch"] >= before  # milliseconds
    assert connect_event["requestContext"]["connectedAt"] >= before
    assert connect_event["queryStringParameters"] == {"client": "again"}
    assert connect_event["multiValueQueryStringParameters"] == {"client": ["test", "again"]}
    assert connect_event["headers"]["Upgrade"] == "websocket"
    assert connect_event["headers"]["X-Forwarded-For"] == "127.0.0.1"

    (disconnect_event,) = recording.events_of("DisconnectFunction")
    parsed_disconnect = APIGatewayWebSocketDisconnectEventModel.model_validate(disconnect_event)
    assert parsed_disconnect.request_context.connection_id == connection_id
    assert parsed_disconnect.request_context.disconnect_status_code == 1000
    assert parsed_disconnect.request_context.event_type == "DISCONNECT"
    assert disconnect_event["requestContext"]["connectedAt"] == connect_event["requestContext"]["connectedAt"]


def test_a_failed_connect_function_refuses_the_handshake(aws, gateway):
    aws.client("dynamodb").delete_table(TableName="ConnectionsTable")  # ConnectFunction's put fails
    with pytest.raises(InvalidStatus) as refused, connect(gateway.ws_url):
        pass
    assert refused.value.response.status_code == 500
    assert gateway.connection_ids() == []


def test_connect_answering_non_2xx_refuses_with_that_status(aws, logs, site, tmp_path):
    code = "def handler(event, context):\n    return {'statusCode': 403, 'body': 'not you'}\n"
    refuse = probe_function(tmp_path / "functions", "RefuseFunction", "handler", code=code)
    template_api = api_from_template()
    routes = {"$connect": Route("$connect", refuse.logical_id, False)}
    api = Api(template_api.logical_id, template_api.selection_path, routes)
    with RecordingRuntime(aws, logs=logs, functions=[refuse]) as runtime:
        gateway = started(runtime, site, api=api)
        try:
            with pytest.raises(InvalidStatus) as refused, connect(gateway.ws_url):
                pass
        finally:
            gateway.stop_background()
    assert refused.value.response.status_code == 403
    assert refused.value.response.body == b"not you"


def test_a_websocket_on_another_path_than_the_stage_is_forbidden(gateway):
    with pytest.raises(InvalidStatus) as refused, connect(gateway.ws_url.replace("/local", "/prod")):
        pass
    assert refused.value.response.status_code == 403


# --- messages -----------------------------------------------------------------------------------


def test_requests_are_answered_by_the_real_route_functions(aws, gateway, recording):
    aws.client("s3").put_object(Bucket=aws.refs["ImagesBucket"], Key="styles/swirls.jpg", Body=b"\xff\xd8\xff")
    with connect(gateway.ws_url) as ws:
        answer = ask(ws, {"action": "LIST_STYLES"})
        connection_id = only_connection(gateway)
    assert answer == {
        "event": "STYLES",
        "data": {
            "styles": [
                {
                    "name": "swirls",
                    "previewUrl": "https://cdn.local.test/styles/swirls.jpg",
                    "title": "Swirls",
                    "artist": None,
                    "year": None,
                }
            ]
        },
    }
    (event,) = recording.events_of("ListStylesFunction")
    parsed = APIGatewayWebSocketMessageEventModel.model_validate(event)
    assert parsed.request_context.route_key == "LIST_STYLES"
    assert parsed.request_context.event_type == "MESSAGE"
    assert parsed.request_context.message_direction == "IN"
    assert parsed.request_context.connection_id == connection_id
    assert parsed.body == '{"action": "LIST_STYLES"}'
    assert parsed.is_base64_encoded is False
    assert event["requestContext"]["messageId"] != event["requestContext"]["requestId"]


def test_unknown_or_unreadable_messages_reach_the_real_default_function(gateway, recording):
    with connect(gateway.ws_url) as ws:
        unknown = ask(ws, {"action": "PAINT_IT_BLACK"})
        not_json = ask(ws, "this is not json")
        no_action = ask(ws, {"style": "swirls"})
    assert unknown["event"] == "ERROR"
    assert unknown["data"]["action"] == "PAINT_IT_BLACK"
    assert unknown["data"]["message"].startswith("unknown action 'PAINT_IT_BLACK': send one of TRANSFER_STYLE")
    assert not_json == {"event": "ERROR", "data": {"action": None, "message": "the message is not valid JSON"}}
    assert no_action["data"]["message"].startswith("the message has no 'action'")
    assert [e["requestContext"]["routeKey"] for e in recording.events_of("DefaultFunction")] == ["$default"] * 3


def test_a_failed_route_function_gets_api_gateways_internal_server_error(aws, gateway):
    aws.client("s3").delete_bucket(Bucket=aws.refs["ImagesBucket"])  # ListStylesFunction's listing fails
    with connect(gateway.ws_url) as ws:
        answer = ask(ws, {"action": "LIST_STYLES"})
        connection_id = only_connection(gateway)
    assert answer["message"] == "Internal server error"
    assert answer["connectionId"] == connection_id
    assert CONNECTION_ID.match(answer["requestId"])


def test_a_slow_function_holds_up_neither_other_clients_nor_other_messages(aws, logs, site, tmp_path):
    slow = probe_function(tmp_path / "functions", "SlowFunction", "slow_route", timeout=10)
    template_api = api_from_template()
    routes = {**template_api.routes, "SLOW": Route("SLOW", slow.logical_id, True)}
    api = Api(template_api.logical_id, template_api.selection_path, routes)
    with RecordingRuntime(aws, logs=logs, functions=[slow]) as runtime:
        runtime.warm(["SlowFunction", "ListStylesFunction"])
        gateway = started(runtime, site, api=api)
        try:
            with connect(gateway.ws_url) as first, connect(gateway.ws_url) as second:
                sent = time.monotonic()
                first.send(json.dumps({"action": "SLOW", "seconds": 3, "echo": "slow"}))
                assert ask(second, {"action": "LIST_STYLES"})["event"] == "STYLES"
                assert ask(first, {"action": "LIST_STYLES"})["event"] == "STYLES"  # overtakes SLOW
                assert time.monotonic() - sent < 2.5
                assert json.loads(first.recv(timeout=10))["echo"] == "slow"
                assert time.monotonic() - sent >= 3
        finally:
            gateway.stop_background()


def test_a_one_way_route_sends_nothing_back(aws, logs, site, tmp_path):
    quiet = probe_function(tmp_path / "functions", "QuietFunction", "count")
    template_api = api_from_template()
    routes = {**template_api.routes, "QUIET": Route("QUIET", quiet.logical_id, False)}
    api = Api(template_api.logical_id, template_api.selection_path, routes)
    with RecordingRuntime(aws, logs=logs, functions=[quiet]) as runtime:
        gateway = started(runtime, site, api=api)
        try:
            with connect(gateway.ws_url) as ws:
                ws.send(json.dumps({"action": "QUIET"}))
                assert wait_for(lambda: runtime.events_of("QuietFunction"))
                assert ask(ws, {"action": "NOPE"})["event"] == "ERROR"  # the first thing to come back
        finally:
            gateway.stop_background()


# --- size limits --------------------------------------------------------------------------------


def fragments(text: str, size: int = 32 * KB) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def test_a_message_up_to_128_kb_in_32_kb_frames_goes_through(gateway, recording):
    request = json.dumps({"action": "LIST_STYLES", "padding": "x" * (120 * KB)})
    assert len(request) <= 128 * KB
    with connect(gateway.ws_url) as ws:
        ws.send(fragments(request))
        answer = json.loads(ws.recv(timeout=15))
    assert answer == {"event": "ERROR", "data": {"action": "LIST_STYLES", "message": "unknown field padding"}}
    assert recording.events_of("ListStylesFunction")[0]["body"] == request


def test_a_message_over_128_kb_closes_the_connection_with_1009(aws, gateway, recording):
    with connect(gateway.ws_url) as ws:
        connection_id = only_connection(gateway)
        # the gateway may close the connection before the last fragment is out (as API Gateway may)
        with contextlib.suppress(ConnectionClosed):
            ws.send(fragments("x" * (129 * KB)))
        assert close_code(ws) == 1009
    assert wait_for(lambda: recording.events_of("DisconnectFunction"))
    disconnect = recording.events_of("DisconnectFunction")[0]["requestContext"]
    assert disconnect["disconnectStatusCode"] == 1009
    assert disconnect["connectionId"] == connection_id
    assert recording.events_of("DefaultFunction") == []  # nothing of it reached a function
    assert wait_for(lambda: not stored_connections(aws))


def test_a_frame_over_32_kb_closes_the_connection_with_1009(gateway, recording):
    with connect(gateway.ws_url) as ws:
        ws.send(json.dumps({"action": "LIST_STYLES", "padding": "x" * (33 * KB)}))  # one frame
        assert close_code(ws) == 1009
    assert recording.events_of("ListStylesFunction") == []


# --- @connections -------------------------------------------------------------------------------


def test_connections_post_reaches_the_client(gateway):
    api = management(gateway)
    with connect(gateway.ws_url) as ws:
        connection_id = only_connection(gateway)
        api.post_to_connection(ConnectionId=connection_id, Data=b'{"event":"HELLO","data":{}}')
        assert json.loads(ws.recv(timeout=10)) == {"event": "HELLO", "data": {}}
        large = json.dumps({"event": "LARGE", "data": {"text": "y" * (100 * KB)}})
        api.post_to_connection(ConnectionId=connection_id, Data=large.encode())
        assert ws.recv(timeout=10) == large  # sent in 32 KB frames, received whole
        with pytest.raises(api.exceptions.PayloadTooLargeException):
            api.post_to_connection(ConnectionId=connection_id, Data=b"z" * (128 * KB + 1))
        # without the stage in the path, as a client given the bare domain would send it
        response = requests.post(
            f"http://127.0.0.1:{gateway.management_port}/@connections/{connection_id}", data=b"bare", timeout=10,
            headers=authorised(gateway),
        )  # fmt: skip
        assert response.status_code == 200
        assert ws.recv(timeout=10) == "bare"


def test_connections_get_describes_the_connection(gateway):
    api = management(gateway)
    with connect(gateway.ws_url, user_agent_header="describe-me") as ws:
        connection_id = only_connection(gateway)
        ask(ws, {"action": "NOPE"})
        described = api.get_connection(ConnectionId=connection_id)
    assert described["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": "describe-me"}
    assert isinstance(described["ConnectedAt"], datetime)
    assert described["LastActiveAt"] >= described["ConnectedAt"]
    assert abs(described["ConnectedAt"].timestamp() - time.time()) < 30


def test_connections_delete_closes_and_then_the_connection_is_gone(aws, gateway):
    api = management(gateway)
    with connect(gateway.ws_url) as ws:
        connection_id = only_connection(gateway)
        api.delete_connection(ConnectionId=connection_id)
        assert close_code(ws) == 1000
    with pytest.raises(api.exceptions.GoneException):
        api.post_to_connection(ConnectionId=connection_id, Data=b"too late")
    with pytest.raises(api.exceptions.GoneException):
        api.get_connection(ConnectionId=connection_id)
    with pytest.raises(api.exceptions.GoneException):
        api.delete_connection(ConnectionId=connection_id)
    assert wait_for(lambda: not stored_connections(aws))  # $disconnect ran


def test_a_closed_or_unknown_connection_answers_410_gone(gateway):
    api = management(gateway)
    with connect(gateway.ws_url):
        connection_id = only_connection(gateway)
    wait_for(lambda: not gateway.connection_ids())
    for unknown in (connection_id, "Tm90QUNvbm5lY3Q="):
        with pytest.raises(api.exceptions.GoneException):
            api.post_to_connection(ConnectionId=unknown, Data=b"{}")
    response = requests.post(
        f"{gateway.management_endpoint}/@connections/Tm90QUNvbm5lY3Q=", data=b"{}", timeout=10,
        headers=authorised(gateway),
    )  # fmt: skip
    assert response.status_code == 410
    assert response.headers["x-amzn-ErrorType"] == "GoneException"
    assert "message" in response.json()
    elsewhere = requests.post(
        f"{gateway.management_endpoint}/somewhere/else", data=b"{}", timeout=10, headers=authorised(gateway)
    )
    assert elsewhere.status_code == 403


@pytest.mark.parametrize("secret", ["", "not-the-secret"])
def test_without_the_secret_connections_cannot_be_pushed_to_read_or_dropped(gateway, secret: str):
    """Anyone who can reach the port could otherwise push forged events to any page, read a
    connection's address or close it."""
    intruder = management(gateway, secret)
    with connect(gateway.ws_url) as ws:
        connection_id = only_connection(gateway)
        with pytest.raises(intruder.exceptions.ForbiddenException):
            intruder.post_to_connection(ConnectionId=connection_id, Data=b'{"event":"FORGED","data":{}}')
        with pytest.raises(intruder.exceptions.ForbiddenException):
            intruder.get_connection(ConnectionId=connection_id)
        with pytest.raises(intruder.exceptions.ForbiddenException):
            intruder.delete_connection(ConnectionId=connection_id)
        for method in ("POST", "GET", "DELETE"):  # plain HTTP too, with or without the stage
            for path in (f"/local/@connections/{connection_id}", f"/@connections/{connection_id}"):
                headers = {CONNECTIONS_SECRET_HEADER: secret} if secret else {}
                response = requests.request(method, f"http://127.0.0.1:{gateway.management_port}{path}",
                                            data=b"{}", headers=headers, timeout=10)  # fmt: skip
                assert response.status_code == 403
                assert response.headers["x-amzn-ErrorType"] == "ForbiddenException"
        # nothing reached the page, and it is still connected: the holder of the secret reaches it
        management(gateway).post_to_connection(ConnectionId=connection_id, Data=b'{"event":"REAL","data":{}}')
        assert json.loads(ws.recv(timeout=10)) == {"event": "REAL", "data": {}}
    assert len(gateway.management_secret) >= 43  # 32 random bytes


def test_only_the_functions_that_reach_connections_get_the_secret(recording, site):
    gateway = started(recording, site)
    try:
        for function in recording.functions():
            env = recording.environment(function)
            declares = "WEBSOCKET_ENDPOINT" in template.function(function)["Environment"]["Variables"]
            assert (env.get(CONNECTIONS_SECRET_VARIABLE) == gateway.management_secret) == declares, function
            assert (CONNECTIONS_SECRET_VARIABLE in env) == declares, function
    finally:
        gateway.stop_background()
    assert {function for function in recording.functions()
            if "WEBSOCKET_ENDPOINT" in template.function(function)["Environment"]["Variables"]} == {
        "NotifyFunction", "PreviewFunction", "PreviewStylesFunction", "DeleteJobFunction"}  # fmt: skip
    # the names the functions' code uses are the gateway's
    assert (connections_api.LOCAL_SECRET_VARIABLE, connections_api.LOCAL_SECRET_HEADER) == (
        CONNECTIONS_SECRET_VARIABLE, CONNECTIONS_SECRET_HEADER)  # fmt: skip


def test_many_posts_in_parallel_reach_many_clients(gateway):
    api = management(gateway)
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(connect(gateway.ws_url)) for _ in range(20)]
        ids = wait_for(lambda: len(gateway.connection_ids()) == 20 and gateway.connection_ids())
        with ThreadPoolExecutor(10) as pool:
            list(pool.map(lambda cid: api.post_to_connection(ConnectionId=cid, Data=cid.encode()), ids))
        assert sorted(ws.recv(timeout=10) for ws in clients) == sorted(ids)


# --- pages --------------------------------------------------------------------------------------


def get(gateway: Gateway, path: str) -> http.client.HTTPResponse:
    """A GET with the path exactly as given (no client-side normalisation of '..')."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    connection.request("GET", path)
    response = connection.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    connection.close()
    return response


@pytest.mark.parametrize("path", ["/", "/app.js", "/config.json", "/styles/nothing.jpg", "/no-such-page"])
def test_every_answer_carries_cloudfronts_security_headers_and_a_content_security_policy(aws, gateway, path):
    response = requests.get(f"{gateway.http_url}{path}", timeout=10)
    for name, value in SECURITY_HEADERS.items():  # CloudFront's managed SecurityHeadersPolicy's
        assert response.headers[name] == value, name
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    policy = dict(d.strip().split(" ", 1) for d in response.headers["Content-Security-Policy"].split(";"))
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == policy["style-src"] == "'self'"  # no inline script or style
    assert policy["frame-ancestors"] == "'self'"
    assert aws.endpoint in policy["img-src"].split()  # presigned images of private jobs
    assert aws.endpoint in policy["connect-src"].split()  # presigned uploads


def test_pages_and_config_are_served(gateway, site):
    index = get(gateway, "/")
    assert index.status == 200
    assert index.body == (site / "index.html").read_bytes()  # type: ignore[attr-defined]
    assert index.headers["Content-Type"] == "text/html; charset=utf-8"
    script = get(gateway, "/app.js")
    assert script.headers["Content-Type"] == "text/javascript; charset=utf-8"  # ES modules need it
    assert get(gateway, "/sub/page.html").body == b"<p>sub page</p>"  # type: ignore[attr-defined]
    config = requests.get(f"{gateway.http_url}/config.json", timeout=10)
    assert config.json() == {"websocketUrl": gateway.ws_url}
    assert get(gateway, "/missing.html").status == 404


@pytest.mark.parametrize(
    "path",
    ["/../secret.txt", "/%2e%2e/secret.txt", "/sub/../../secret.txt", "/..%2fsecret.txt", "/.hidden", "//etc/passwd"],
)
def test_nothing_outside_the_pages_is_served(gateway, path):
    response = get(gateway, path)
    assert response.status == 404
    assert b"SECRET" not in response.body  # type: ignore[attr-defined]
    assert b"hidden" not in response.body  # type: ignore[attr-defined]


def test_public_images_come_from_the_bucket_and_nothing_private(aws, gateway):
    s3, bucket = aws.client("s3"), aws.refs["ImagesBucket"]
    s3.put_object(Bucket=bucket, Key="public/output/a.jpg", Body=b"\xff\xd8public", ContentType="image/jpeg")
    s3.put_object(Bucket=bucket, Key="private/output/b.jpg", Body=b"\xff\xd8private", ContentType="image/jpeg")
    s3.put_object(Bucket=bucket, Key="uploads/c.jpg", Body=b"\xff\xd8upload", ContentType="image/jpeg")
    public = requests.get(f"{gateway.http_url}/public/output/a.jpg", timeout=10)
    assert public.status_code == 200
    assert public.content == b"\xff\xd8public"
    assert public.headers["Content-Type"] == "image/jpeg"
    assert requests.get(f"{gateway.http_url}/public/output/none.jpg", timeout=10).status_code == 404
    for key in ("private/output/b.jpg", "uploads/c.jpg"):
        assert requests.get(f"{gateway.http_url}/{key}", timeout=10).status_code == 404


def test_odd_paths_are_not_found_never_an_error(gateway):
    """A name too long for the file system, a NUL, and keys S3 refuses: 404, no traceback."""
    for path in ("/" + "a" * 300, "/sub/" + "b" * 5000 + ".html", "/public/%00", "/styles/%00x.jpg",
                 "/public/" + "k" * 1100, "/%00"):  # fmt: skip
        response = get(gateway, path)
        assert response.status == 404, (path, response.status)
        assert b"Traceback" not in response.body  # type: ignore[attr-defined]


def test_config_names_only_this_server(gateway):
    """The Host header is the client's: config.json echoes only a name of this very server."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    for host, expected in (
        ("evil.example:443", gateway.ws_url),
        (f"localhost:{gateway.port}", f"ws://localhost:{gateway.port}/{gateway.stage}"),
        (f"127.0.0.1:{gateway.port + 1}", gateway.ws_url),
    ):
        connection.request("GET", "/config.json", headers={"Host": host})
        assert json.loads(connection.getresponse().read()) == {"websocketUrl": expected}
    connection.close()


def test_route_selection_survives_hostile_json():
    api = Api("Api", ("action",), {"$default": Route("$default", "D", True), "GO": Route("GO", "G", True)})
    assert api.select("[" * 100_000) == "$default"  # RecursionError inside json
    assert api.select('{"action": "GO", "x": ' + "1" * 5000 + "}") == "$default"  # int over 4300 digits
    assert api.select('{"action": "GO"}') == "GO"


# --- stopping and idle connections ---------------------------------------------------------------


def test_stop_closes_every_client_cleanly_after_their_disconnect(aws, recording, site):
    gateway = started(recording, site)
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(connect(gateway.ws_url)) for _ in range(3)]
        assert wait_for(lambda: len(stored_connections(aws)) == 3)
        gateway.stop_background()
        assert [close_code(ws) for ws in clients] == [1001, 1001, 1001]
    assert stored_connections(aws) == set()  # every $disconnect ran before stop() returned
    assert len(recording.events_of("DisconnectFunction")) == 3


def test_idle_connections_are_closed(recording, site):
    gateway = started(recording, site, idle_timeout=0.5)
    try:
        with connect(gateway.ws_url) as ws:
            started_at = time.monotonic()
            assert close_code(ws) == 1001
            assert 0.4 < time.monotonic() - started_at < 5
    finally:
        gateway.stop_background()
