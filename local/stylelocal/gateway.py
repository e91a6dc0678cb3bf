"""A local stand-in for the template's API Gateway WebSocket API, its @connections management API
and (as CloudFront does in AWS) the pages.

`Gateway(runtime, host, port, web_dir, stage)` serves, on one port:

- WebSocket clients at `ws://host:port/{stage}` (`.ws_url`), as API Gateway does:
  - `$connect` runs before the handshake completes: the route's function answering anything but
    2xx refuses the connection with that HTTP status (500 if it failed);
  - every message is routed by the API's RouteSelectionExpression (`$request.body.action`): the
    route whose key equals the body's `action`, else `$default` (unknown action, no action, not
    JSON, binary); each message is its own invocation, run off the event loop, so a slow function
    holds up neither its client nor the others;
  - routes with a RouteResponse in the template are two-way: the function's returned `body` is
    sent back to the client; a failed invocation gets API Gateway's
    {"message": "Internal server error", "connectionId", "requestId"};
  - a message over 128 KB, or a frame over 32 KB (API Gateway's fixed quotas), closes the
    connection with 1009; connections idle for 10 minutes, or open for 2 hours, are closed (1001);
  - `$disconnect` runs after a connection closed, best effort;
  - the events have API Gateway's shape (requestContext with routeKey, eventType, connectionId,
    connectedAt, requestId, messageId, requestTimeEpoch in ms, domainName, stage, apiId, identity,
    ...), which powertools' APIGatewayWebSocket*EventModel parse;
- plain HTTP GETs on the same port: `/` (web_dir/index.html), the other files of `web_dir` (never
  outside it, nor hidden files), `/config.json` ({"websocketUrl": ...}, the address the pages
  connect to), and, like the CloudFront distribution, the images bucket's public areas
  (`/public/...`, `/styles/...`, read from moto), so that PUBLIC_BASE_URL can be `.http_url`.
  Every answer carries the security headers of CloudFront's managed SecurityHeadersPolicy and a
  Content-Security-Policy that the pages keep to (`.security_headers()`).

And, on a second port, the @connections management API (`.management_endpoint`, what the
functions get as WEBSOCKET_ENDPOINT; boto3's apigatewaymanagementapi client with that
endpoint_url sends `{POST,GET,DELETE} /{stage}/@connections/{id}`):
POST sends the body to the client as one message (text when it is UTF-8), GET describes the
connection, DELETE closes it; an unknown or closed connection answers 410 GoneException, a body
over 128 KB 413 PayloadTooLargeException, both with the `x-amzn-ErrorType` header botocore reads.
(POST and DELETE cannot share the WebSocket port: the handshake parser accepts only GET.)
In AWS only a SigV4-signed caller that IAM allows execute-api:ManageConnections can use that API;
the local stack's credentials are fake and public, so instead each gateway makes a secret when it
is created (`.management_secret`) and answers only requests that carry it in the header
X-Stylelocal-Connections-Secret (any other: 403 ForbiddenException). It gives the secret to the
functions that reach @connections (those with WEBSOCKET_ENDPOINT) through their environment,
STYLELOCAL_CONNECTIONS_SECRET, where styleservice.connections_api's client adds the header; without it
anyone who can reach the port could push forged events to any page, read a connection's address
or drop it.

Routes and their functions come from template.yaml (AWS::ApiGatewayV2::Route -> Integration ->
the function named in its IntegrationUri); functions run through a `LambdaRuntime`.

Use `await gateway.start()` / `await gateway.stop()` inside an event loop, or
`gateway.start_background()` / `gateway.stop_background()` (also `with Gateway(...) as gateway`),
which run the loop in a thread of their own.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import email.utils
import hmac
import json
import mimetypes
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from botocore.exceptions import ClientError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .lambdas import FunctionError, LambdaRuntime

MAX_MESSAGE_BYTES = 128 * 1024  # API Gateway: message payload size, not adjustable
MAX_FRAME_BYTES = 32 * 1024  # API Gateway: WebSocket frame size, not adjustable
IDLE_TIMEOUT_SECONDS = 600.0  # API Gateway: idle connection timeout
MAX_LIFETIME_SECONDS = 7200.0  # API Gateway: connection duration
# The handshake waits for $connect: a cold start plus the function's timeout, not websockets' 10 s.
OPEN_TIMEOUT_SECONDS = 60.0
# Invocations run in threads (runtime.invoke blocks); asyncio's default pool has cpu_count + 4
# threads, too few for a burst of connects and messages that wait on the functions' pools.
INVOKE_THREADS = 64
# Bodies larger than this are not even read by the management API (413 and the connection closed).
MAX_MANAGEMENT_BODY = 16 * 1024 * 1024
_TEXT_FRAGMENT_CHARS = MAX_FRAME_BYTES // 4  # a UTF-8 character takes up to 4 bytes
# The @connections API's secret: the variable the functions get it in, and the header they send it
# in (the same names as styleservice.connections_api's, which the functions use; a test checks they agree).
CONNECTIONS_SECRET_VARIABLE = "STYLELOCAL_CONNECTIONS_SECRET"
CONNECTIONS_SECRET_HEADER = "X-Stylelocal-Connections-Secret"
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".ico": "image/x-icon",
}
# The headers of CloudFront's managed SecurityHeadersPolicy (template.yaml's distribution uses it).
SECURITY_HEADERS = {
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Strict-Transport-Security": "max-age=31536000",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "SAMEORIGIN",
    "X-XSS-Protection": "1; mode=block",
}
# What the CloudFront distribution serves from the bucket (the bucket policy's public areas).
_BUCKET_AREAS = ("public/", "styles/")


def _template() -> Any:
    from . import template

    return template


def aws_id() -> str:
    """An id shaped like API Gateway's connection, request and message ids ('L0SM9cOFvHcCIhw=')."""
    return base64.urlsafe_b64encode(secrets.token_bytes(11)).decode()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _request_time(epoch: float) -> str:
    # CLF format as API Gateway writes it, month names in English whatever the locale
    moment = datetime.fromtimestamp(epoch, UTC)
    month = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")[moment.month - 1]
    return f"{moment.day:02d}/{month}/{moment.year}:{moment:%H:%M:%S} +0000"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


# --- routes from the template ---------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One route of the WebSocket API: its key, the function of its integration, and whether it
    is two-way (has a RouteResponse: the function's result goes back to the client)."""

    key: str
    function: str
    two_way: bool


@dataclass(frozen=True)
class Api:
    """The template's WebSocket API: its route selection (the body field that names the route)
    and its routes by key."""

    logical_id: str
    selection_path: tuple[str, ...]
    routes: dict[str, Route]

    def select(self, body: str | None) -> str:
        """The route key for a message body: the field that the selection expression names, if
        it is a string naming a route, else $default."""
        try:
            value: Any = json.loads(body) if body is not None else None
        except (ValueError, RecursionError):  # bad JSON, a 4300-digit number, deep nesting
            return "$default"
        for part in self.selection_path:
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, str) and value in self.routes and not value.startswith("$"):
            return value
        return "$default"


def _logical_id(value: Any, pattern: str) -> str | None:
    """The logical id an intrinsic value refers to: !Ref X, or the `${X...}` that `pattern` finds
    in a !Sub."""
    if isinstance(value, dict) and "Ref" in value:
        return value["Ref"]
    if isinstance(value, dict) and "Fn::Sub" in value:
        text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
        match = re.search(pattern, text)
        return match.group(1) if match else None
    return None


def api_from_template(logical_id: str | None = None) -> Api:
    """Read the WebSocket API (the only one, or `logical_id`) and its routes from template.yaml."""
    template = _template()
    apis = {
        name: r
        for name, r in template.resources("AWS::ApiGatewayV2::Api").items()
        if r["Properties"].get("ProtocolType") == "WEBSOCKET"
    }
    if logical_id is None:
        if len(apis) != 1:
            raise ValueError(f"template.yaml has {len(apis)} WebSocket APIs: name the one to serve")
        logical_id = next(iter(apis))
    expression = apis[logical_id]["Properties"]["RouteSelectionExpression"]
    if not expression.startswith("$request.body."):
        raise ValueError(f"route selection {expression!r} is not supported (only $request.body.<field>)")
    selection = tuple(expression.removeprefix("$request.body.").split("."))

    integrations = template.resources("AWS::ApiGatewayV2::Integration")
    functions = template.resources("AWS::Serverless::Function")
    two_way = {
        _logical_id(r["Properties"]["RouteId"], r"^$")
        for r in template.resources("AWS::ApiGatewayV2::RouteResponse").values()
    }
    routes: dict[str, Route] = {}
    for name, resource in template.resources("AWS::ApiGatewayV2::Route").items():
        props = resource["Properties"]
        if _logical_id(props["ApiId"], r"^$") != logical_id:
            continue
        integration = _logical_id(props.get("Target"), r"integrations/\$\{(\w+)\}")
        if integration not in integrations:
            raise ValueError(f"route {props['RouteKey']}: no integration of this template in its Target")
        uri = integrations[integration]["Properties"]["IntegrationUri"]
        function = _logical_id(uri, r"\$\{(\w+)\.Arn\}")
        if function not in functions:
            raise ValueError(f"integration {integration}: no function of this template in its IntegrationUri")
        routes[props["RouteKey"]] = Route(props["RouteKey"], function, name in two_way)
    return Api(logical_id, selection, routes)


# --- connections ----------------------------------------------------------------------------------


@dataclass(eq=False)
class _Client:
    connection_id: str
    connected_at: float
    source_ip: str
    user_agent: str
    domain_name: str
    ws: ServerConnection | None = None
    last_active: float = field(default=0.0)
    open: bool = False

    def __post_init__(self) -> None:
        self.last_active = self.connected_at


class Gateway:
    """The WebSocket API, its @connections API and the pages (see the module docstring).

    `runtime` runs the functions; `web_dir` holds the pages; `stage` is the path of the WebSocket
    URL and of the management endpoint. `port=0` picks a free port (as does `management_port=0`).
    `host` is one address (127.0.0.1 by default: loopback only); a name that resolves to several
    addresses would get one port per address with port=0.
    For the pages and functions to agree, give the functions WEBSOCKET_ENDPOINT =
    `.management_endpoint` and PUBLIC_BASE_URL = `.http_url` (runtime overrides).
    """

    def __init__(
        self,
        runtime: LambdaRuntime,
        host: str = "127.0.0.1",
        port: int = 0,
        web_dir: Path = Path("web"),
        stage: str = "local",
        *,
        management_port: int = 0,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        max_frame_bytes: int | None = MAX_FRAME_BYTES,
        idle_timeout: float = IDLE_TIMEOUT_SECONDS,
        max_lifetime: float = MAX_LIFETIME_SECONDS,
        serve_images: bool = True,
        api: Api | None = None,
    ) -> None:
        self.runtime = runtime
        self.host = host
        self.port = port
        self.web_dir = Path(web_dir).resolve()
        self.stage = stage
        self.management_port = management_port
        self.max_message_bytes = max_message_bytes
        self.max_frame_bytes = max_frame_bytes
        self.idle_timeout = idle_timeout
        self.max_lifetime = max_lifetime
        self.serve_images = serve_images
        self.api = api or api_from_template()
        refs = getattr(runtime.aws, "refs", {})
        self.api_id = str(refs.get(self.api.logical_id, "localws"))
        self._bucket = refs.get("ImagesBucket") if serve_images else None
        self._s3: Any = None
        self._clients: dict[str, _Client] = {}
        self._handshaking: dict[ServerConnection, _Client] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: Server | None = None
        self._management: asyncio.Server | None = None
        self._management_writers: set[asyncio.StreamWriter] = set()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.management_secret = secrets.token_urlsafe(32)  # see the module's docstring
        # the functions that reach @connections get it (a stand-in runtime without the method, none)
        if hasattr(runtime, "update_local_variables"):
            runtime.update_local_variables({CONNECTIONS_SECRET_VARIABLE: self.management_secret})

    # --- addresses ----------------------------------------------------------------------------

    @property
    def ws_url(self) -> str:
        return f"ws://{_url_host(self.host)}:{self.port}/{self.stage}"

    @property
    def http_url(self) -> str:
        """The pages' address (no trailing slash): http://host:port."""
        return f"http://{_url_host(self.host)}:{self.port}"

    def _own_hosts(self) -> set[str]:
        """The Host headers that name this server: its bound address, and loopback's names when it
        listens on loopback or on every interface."""
        names = {_url_host(self.host)}
        if self.host in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::"):
            names |= {"127.0.0.1", "localhost", "[::1]"}
        return {f"{name}:{self.port}" for name in names}

    @property
    def management_endpoint(self) -> str:
        """The @connections API, as WEBSOCKET_ENDPOINT gives it to the functions: http://host:port/stage."""
        return f"http://{_url_host(self.host)}:{self.management_port}/{self.stage}"

    def security_headers(self) -> dict[str, str]:
        """What every page, image and answer of the pages' server carries: the headers that the
        CloudFront distribution's managed SecurityHeadersPolicy adds (Strict-Transport-Security
        included: browsers ignore it over plain HTTP), and a Content-Security-Policy that the pages
        keep to (scripts and styles of their own; images from here, the bucket's presigned URLs,
        data: thumbnails and blob: previews of a chosen file; connections to here, the WebSocket
        included, and the bucket, for presigned uploads)."""
        origins = [self.http_url]
        bucket = getattr(self.runtime.aws, "endpoint", None)  # presigned URLs are the bucket's, at moto
        if bucket:
            origins.append(str(bucket).rstrip("/"))
        listed = " ".join(origins)
        policy = (
            f"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob: {listed}; "
            f"connect-src 'self' {listed}; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
        )
        return {**SECURITY_HEADERS, "Content-Security-Policy": policy}

    def connection_ids(self) -> list[str]:
        """The ids of the open connections."""
        return [cid for cid, client in list(self._clients.items()) if client.open]

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> Gateway:
        self._loop = asyncio.get_running_loop()
        self._executor = concurrent.futures.ThreadPoolExecutor(INVOKE_THREADS, thread_name_prefix="gateway-invoke")
        max_size: int | tuple[int, int] = self.max_message_bytes
        if self.max_frame_bytes is not None:
            max_size = (self.max_message_bytes, self.max_frame_bytes)
        self._server = await serve(
            self._serve_client,
            self.host,
            self.port,
            process_request=self._process_request,
            process_response=self._process_response,
            server_header=None,
            compression=None,  # API Gateway negotiates no extension
            max_size=max_size,
            ping_interval=None,  # API Gateway answers pings but sends none
            open_timeout=OPEN_TIMEOUT_SECONDS,
            backlog=1024,  # a burst of connects must not overflow the listen queue (100 by default)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._management = await asyncio.start_server(
            self._serve_management, self.host, self.management_port, backlog=1024
        )
        self.management_port = self._management.sockets[0].getsockname()[1]
        self._reaper = asyncio.create_task(self._close_stale())
        return self

    async def stop(self) -> None:
        """Close every client (1001, as API Gateway does when it goes away), run their
        $disconnect, and stop serving."""
        if self._reaper is not None:
            self._reaper.cancel()
        if self._management is not None:
            self._management.close()
            for writer in list(self._management_writers):
                writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._management.wait_closed(), 5)
        if self._server is not None:
            self._server.close(close_connections=True)
            await self._server.wait_closed()  # the handlers' $disconnect invocations included
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def start_background(self) -> Gateway:
        """Start in an event loop of its own, in a daemon thread; returns once it serves."""
        loop = asyncio.new_event_loop()
        ready: concurrent.futures.Future[Gateway] = concurrent.futures.Future()

        def run() -> None:
            asyncio.set_event_loop(loop)

            async def started() -> None:
                try:
                    ready.set_result(await self.start())
                except BaseException as error:
                    ready.set_exception(error)

            starting = loop.create_task(started())
            loop.run_forever()
            starting.cancel()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="gateway", daemon=True)
        self._thread.start()
        try:
            ready.result(timeout=30)
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=10)
            raise
        return self

    def stop_background(self) -> None:
        if self._thread is None or self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self.stop(), self._loop).result(timeout=60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._thread = None

    def __enter__(self) -> Gateway:
        return self.start_background()

    def __exit__(self, *exc: object) -> None:
        self.stop_background()

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run a coroutine function in the gateway's loop from another thread (for tests)."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(function(*args), self._loop).result(timeout=60)

    # --- invocations --------------------------------------------------------------------------

    async def _invoke(self, function: str, event: dict[str, Any]) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.runtime.invoke, function, event)

    def _context(self, client: _Client, route_key: str, event_type: str, now: float) -> dict[str, Any]:
        request_id = aws_id()
        return {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": request_id,
            "requestTime": _request_time(now),
            "messageDirection": "IN",
            "stage": self.stage,
            "connectedAt": int(client.connected_at * 1000),
            "requestTimeEpoch": int(now * 1000),
            "identity": {"sourceIp": client.source_ip, "userAgent": client.user_agent},
            "requestId": request_id,
            "domainName": client.domain_name,
            "connectionId": client.connection_id,
            "apiId": self.api_id,
        }

    # --- the handshake: pages, $connect -------------------------------------------------------

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            page = await self._page(request)
            page.headers.update(self.security_headers())
            return page
        if urlsplit(request.path).path.rstrip("/") != f"/{self.stage}":
            return _response(HTTPStatus.FORBIDDEN, {"message": "Forbidden"})
        return None  # websockets checks the handshake; $connect runs once it is valid

    async def _process_response(
        self, connection: ServerConnection, request: Request, response: Response
    ) -> Response | None:
        if response.status_code != HTTPStatus.SWITCHING_PROTOCOLS:
            return None  # a page, or a handshake websockets refused
        now = time.time()
        address = connection.remote_address
        client = _Client(
            connection_id=aws_id(),
            connected_at=now,
            source_ip=str(address[0]) if address else "127.0.0.1",
            user_agent=request.headers.get("User-Agent", ""),
            domain_name=request.headers.get("Host", f"{self.host}:{self.port}"),
        )
        route = self.api.routes.get("$connect")
        if route is not None:
            event = self._connect_event(client, request, now)
            result = await self._invoke(route.function, event)
            status = _status_of(result)
            if not 200 <= status < 300:
                return _refusal(status, result)
        self._handshaking[connection] = client
        return None

    def _connect_event(self, client: _Client, request: Request, now: float) -> dict[str, Any]:
        headers: dict[str, str] = {}
        multi: dict[str, list[str]] = {}
        port = str(self.port)
        forwarded = [
            ("X-Amzn-Trace-Id", f"Root=1-{int(now):08x}-{secrets.token_hex(12)}"),
            ("X-Forwarded-For", client.source_ip),
            ("X-Forwarded-Port", port),
            ("X-Forwarded-Proto", "http"),
        ]
        for name, value in [*request.headers.raw_items(), *forwarded]:
            headers[name] = value
            multi.setdefault(name, []).append(value)
        event: dict[str, Any] = {
            "headers": headers,
            "multiValueHeaders": multi,
            "requestContext": self._context(client, "$connect", "CONNECT", now),
            "isBase64Encoded": False,
        }
        query = urlsplit(request.path).query
        if query:
            values = parse_qs(query, keep_blank_values=True)
            event["queryStringParameters"] = {k: v[-1] for k, v in values.items()}
            event["multiValueQueryStringParameters"] = values
        return event

    # --- connections: messages, $disconnect ---------------------------------------------------

    async def _serve_client(self, ws: ServerConnection) -> None:
        client = self._handshaking.pop(ws, None)
        if client is None:  # cannot happen: every accepted handshake went through $connect
            await ws.close(1011, "internal error")
            return
        client.ws = ws
        client.open = True
        client.last_active = time.time()  # idle from here: $connect may have taken a cold start
        self._clients[client.connection_id] = client
        try:
            async for message in ws:
                client.last_active = time.time()
                task = asyncio.create_task(self._message(client, message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except ConnectionClosed:
            pass  # closed abnormally, or by the size limits (1009): $disconnect says how
        finally:
            client.open = False
            self._clients.pop(client.connection_id, None)
            await self._disconnect(client, ws)

    async def _message(self, client: _Client, message: str | bytes) -> None:
        now = time.time()
        if isinstance(message, bytes):
            body, encoded, route_key = base64.b64encode(message).decode(), True, "$default"
        else:
            body, encoded, route_key = message, False, self.api.select(message)
        context = self._context(client, route_key, "MESSAGE", now)
        context["messageId"] = aws_id()
        route = self.api.routes.get(route_key)
        if route is None:  # no route and no $default: API Gateway answers so
            await self._send(client, _gateway_error("Forbidden", client, context["requestId"]))
            return
        event = {"requestContext": context, "body": body, "isBase64Encoded": encoded}
        result = await self._invoke(route.function, event)
        if not route.two_way:
            return
        if isinstance(result, FunctionError) or not isinstance(result, dict):
            await self._send(client, _gateway_error("Internal server error", client, context["requestId"]))
            return
        answer = result.get("body")
        if answer is None:
            return
        if result.get("isBase64Encoded"):
            await self._send(client, base64.b64decode(answer))
        else:
            await self._send(client, answer if isinstance(answer, str) else json.dumps(answer))

    async def _send(self, client: _Client, data: str | bytes) -> bool:
        """One message to a client, in frames of at most 32 KB as API Gateway sends them."""
        ws = client.ws
        if ws is None or not client.open:
            return False
        try:
            if isinstance(data, str) and len(data) > _TEXT_FRAGMENT_CHARS:
                step = _TEXT_FRAGMENT_CHARS
                await ws.send([data[i : i + step] for i in range(0, len(data), step)])
            elif isinstance(data, bytes) and len(data) > MAX_FRAME_BYTES:
                step = MAX_FRAME_BYTES
                await ws.send([data[i : i + step] for i in range(0, len(data), step)])
            else:
                await ws.send(data)
        except ConnectionClosed:
            return False
        client.last_active = time.time()
        return True

    async def _disconnect(self, client: _Client, ws: ServerConnection) -> None:
        route = self.api.routes.get("$disconnect")
        if route is None:
            return
        now = time.time()
        context = self._context(client, "$disconnect", "DISCONNECT", now)
        code, reason = _closed_with(ws)
        context["disconnectStatusCode"] = code
        context["disconnectReason"] = reason
        headers = {"Host": client.domain_name, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
        event = {
            "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "requestContext": context,
            "isBase64Encoded": False,
        }
        with contextlib.suppress(Exception):  # best effort, as in API Gateway
            await self._invoke(route.function, event)

    async def _close_stale(self) -> None:
        """Close connections idle too long or open too long (1001 Going away)."""
        period = max(0.05, min(5.0, self.idle_timeout / 4, self.max_lifetime / 4))
        while True:
            await asyncio.sleep(period)
            now = time.time()
            for client in list(self._clients.values()):
                stale = now - client.last_active > self.idle_timeout
                if client.ws is not None and (stale or now - client.connected_at > self.max_lifetime):
                    task = asyncio.create_task(client.ws.close(1001, "Going away"))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)

    # --- pages ---------------------------------------------------------------------------------

    async def _page(self, request: Request) -> Response:
        path = unquote(urlsplit(request.path).path)
        if path == "/config.json":
            # The Host header is the client's to write: only a name this server answers to is
            # echoed (so a page opened at localhost connects to localhost), never another.
            host = request.headers.get("Host", "")
            url = f"ws://{host}/{self.stage}" if host in self._own_hosts() else self.ws_url
            return _response(HTTPStatus.OK, {"websocketUrl": url}, cache=False)
        if self._bucket is not None and path.lstrip("/").startswith(_BUCKET_AREAS):
            return await self._image(path.lstrip("/"))
        relative = "index.html" if path in ("", "/") else path.lstrip("/")
        parts = relative.split("/")
        if any(part.startswith(".") or part == "" for part in parts) or "\\" in relative or "\0" in relative:
            return _response(HTTPStatus.NOT_FOUND, {"message": "Not Found"})
        try:
            target = (self.web_dir / relative).resolve()
            found = target.is_relative_to(self.web_dir) and target.is_file()
        except (OSError, ValueError):  # a name too long for the file system, and the like
            found = False
        if not found:
            return _response(HTTPStatus.NOT_FOUND, {"message": "Not Found"})
        content_type = _CONTENT_TYPES.get(target.suffix.lower()) or (
            mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        )
        body = await asyncio.to_thread(target.read_bytes)
        headers = Headers({"Content-Type": content_type, "Cache-Control": "no-cache"})
        return Response(HTTPStatus.OK, "OK", headers, body)

    async def _image(self, key: str) -> Response:
        def read() -> tuple[bytes, str] | None:
            if self._s3 is None:
                self._s3 = self.runtime.aws.client("s3")
            try:
                found = self._s3.get_object(Bucket=self._bucket, Key=key)
            except ClientError as failure:
                # NoSuchKey, and every key S3 itself refuses (a NUL, a key too long: 400): as
                # CloudFront answers for an object it cannot fetch, Not Found, never a traceback
                status = failure.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
                if status < 500:
                    return None
                raise
            return found["Body"].read(), found.get("ContentType") or "application/octet-stream"

        found = await asyncio.get_running_loop().run_in_executor(self._executor, read)
        if found is None:
            return _response(HTTPStatus.NOT_FOUND, {"message": "Not Found"})
        body, content_type = found
        return Response(HTTPStatus.OK, "OK", Headers({"Content-Type": content_type}), body)

    # --- @connections --------------------------------------------------------------------------

    async def _serve_management(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A small HTTP/1.1 server (keep-alive, Content-Length bodies) for the management API."""
        self._management_writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                try:
                    method, target, version = lines[0].split(" ", 2)
                except ValueError:
                    await _write(writer, 400, {"message": "Bad Request"}, "BadRequestException", close=True)
                    return
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name:
                        headers[name.strip().lower()] = value.strip()
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    await _write(writer, 411, {"message": "Length Required"}, "BadRequestException", close=True)
                    return
                length = int(headers.get("content-length") or 0)
                if length > MAX_MANAGEMENT_BODY:
                    await _write(writer, 413, {"message": "Message too long"}, "PayloadTooLargeException", close=True)
                    return
                try:
                    body = await reader.readexactly(length) if length else b""
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                given = headers.get(CONNECTIONS_SECRET_HEADER.lower(), "")
                if hmac.compare_digest(given.encode(), self.management_secret.encode()):
                    status, payload, kind = await self._manage(method, target, body)
                else:  # as API Gateway answers a caller it cannot authenticate
                    status, payload, kind = 403, {"message": "Forbidden"}, "ForbiddenException"
                close = headers.get("connection", "").lower() == "close" or version != "HTTP/1.1"
                await _write(writer, status, payload, kind, close=close)
                if close:
                    return
        finally:
            self._management_writers.discard(writer)
            writer.close()

    async def _manage(self, method: str, target: str, body: bytes) -> tuple[int, Any, str | None]:
        """(status, JSON body or None, error type) for one management API request."""
        parts = [unquote(part) for part in urlsplit(target).path.split("/") if part]
        if len(parts) == 3 and parts[0] == self.stage:
            parts = parts[1:]
        if len(parts) != 2 or parts[0] != "@connections" or method not in ("POST", "GET", "DELETE"):
            return 403, {"message": "Forbidden"}, "ForbiddenException"
        connection_id = parts[1]
        client = self._clients.get(connection_id)
        if client is None or not client.open:
            return 410, {"message": f"connection {connection_id} is gone"}, "GoneException"
        if method == "GET":
            identity = {"sourceIp": client.source_ip, "userAgent": client.user_agent}
            description = {
                "connectedAt": _iso(client.connected_at),
                "identity": identity,
                "lastActiveAt": _iso(client.last_active),
            }
            return 200, description, None
        if method == "DELETE":
            assert client.ws is not None
            task = asyncio.create_task(client.ws.close(1000))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            client.open = False  # gone at once for the API, whatever the closing handshake takes
            return 204, None, None
        if len(body) > self.max_message_bytes:
            return 413, {"message": "Message too long"}, "PayloadTooLargeException"
        try:
            data: str | bytes = body.decode("utf-8")
        except UnicodeDecodeError:
            data = body
        if not await self._send(client, data):
            return 410, {"message": f"connection {connection_id} is gone"}, "GoneException"
        return 200, None, None


def _closed_with(ws: ServerConnection) -> tuple[int, str]:
    """The close code and reason of a closed connection, whichever side closed it first
    (websockets' close_code is only what the client sent, 1006 when the server failed it)."""
    protocol = ws.protocol
    received, sent = protocol.close_rcvd, protocol.close_sent
    if received is not None and (sent is None or protocol.close_rcvd_then_sent):
        return int(received.code), received.reason
    if sent is not None:
        return int(sent.code), sent.reason
    return 1006, ""  # the TCP connection ended without a closing handshake


def _status_of(result: Any) -> int:
    """The HTTP status an integration's result means for $connect."""
    if isinstance(result, FunctionError):
        return 500
    if isinstance(result, dict) and isinstance(result.get("statusCode"), int):
        return int(result["statusCode"])
    return 502  # not a proxy response: API Gateway cannot tell what it meant


def _refusal(status: int, result: Any) -> Response:
    """The handshake's answer when $connect refused: the status, and the function's body if any."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Refused"
    body = result.get("body") if isinstance(result, dict) and not isinstance(result, FunctionError) else None
    text = body if isinstance(body, str) else json.dumps({"message": phrase})
    return Response(status, phrase, Headers({"Content-Type": "application/json"}), text.encode())


def _gateway_error(text: str, client: _Client, request_id: str) -> str:
    return json.dumps({"message": text, "connectionId": client.connection_id, "requestId": request_id})


def _response(status: HTTPStatus, payload: Any, cache: bool = True) -> Response:
    headers = Headers({"Content-Type": "application/json"})
    if not cache:
        headers["Cache-Control"] = "no-store"
    return Response(status.value, status.phrase, headers, json.dumps(payload).encode())


async def _write(writer: asyncio.StreamWriter, status: int, payload: Any, kind: str | None, close: bool) -> None:
    body = b"" if payload is None else json.dumps(payload).encode()
    phrase = HTTPStatus(status).phrase
    lines = [
        f"HTTP/1.1 {status} {phrase}",
        f"Date: {email.utils.formatdate(usegmt=True)}",
        f"x-amzn-RequestId: {uuid.uuid4()}",
        f"Content-Length: {len(body)}",
        f"Connection: {'close' if close else 'keep-alive'}",
    ]
    if payload is not None:
        lines.append("Content-Type: application/json")
    if kind is not None:
        lines.append(f"x-amzn-ErrorType: {kind}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    with contextlib.suppress(ConnectionError):
        await writer.drain()


__all__ = ["Api", "Gateway", "Route", "api_from_template", "aws_id"]
