"""A real local HTTP server standing in for API Gateway's @connections management API.

moto's `apigatewaymanagementapi` accepts any connection id and never answers 410, so it cannot
show what the stack does with closed connections. This server keeps a set of open connection ids
and, like API Gateway:

- POST   {stage}/@connections/{id}  records the message (the raw body) and answers 200;
- GET    {stage}/@connections/{id}  answers the connection's description;
- DELETE {stage}/@connections/{id}  closes the connection (204);
- any of them on an unknown or closed id answers 410 with a GoneException (header
  x-amzn-ErrorType and a {"message": ...} body), which botocore turns into
  `client.exceptions.GoneException`.

Tests can also make one id answer 500, to stand for a transient API Gateway failure, or hold its
posts until released, to catch a delivery in mid-flight.
Point boto3 at it with `endpoint_url=server.endpoint` (a URL ending in the stage, as the template's
WEBSOCKET_ENDPOINT does).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

STAGE = "prod"


class ConnectionsServer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, str] = {}  # connection id -> connectedAt (ISO 8601)
        self._failing: set[str] = set()
        self._held: dict[str, tuple[threading.Event, threading.Event]] = {}  # id -> (arrived, released)
        self._messages: dict[str, list[bytes]] = {}
        self.requests: list[tuple[str, str]] = []  # (method, connection id), in arrival order
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._http.daemon_threads = True
        # a short poll interval: shutdown() waits for the loop's next poll (0.5 s by default)
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.02}, name="connections-server", daemon=True
        )

    @property
    def endpoint(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host}:{port}/{STAGE}"

    def start(self) -> ConnectionsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    # --- what tests arrange ---------------------------------------------------------------------

    def connect(self, *connection_ids: str) -> None:
        with self._lock:
            for connection_id in connection_ids:
                self._open[connection_id] = datetime.now(UTC).isoformat(timespec="seconds")

    def close(self, *connection_ids: str) -> None:
        """The client went away without $disconnect reaching the service: posts now get 410."""
        with self._lock:
            for connection_id in connection_ids:
                self._open.pop(connection_id, None)

    def fail(self, connection_id: str, failing: bool = True) -> None:
        """Make posts to this (open) id answer 500 until told otherwise."""
        with self._lock:
            (self._failing.add if failing else self._failing.discard)(connection_id)

    def hold(self, connection_id: str) -> None:
        """Make the next posts to this id wait until `release`: a delivery caught in mid-flight."""
        with self._lock:
            self._held[connection_id] = (threading.Event(), threading.Event())

    def wait_until_held(self, connection_id: str, timeout: float = 10) -> bool:
        """True once a post to a held id has arrived (and is waiting)."""
        return self._held[connection_id][0].wait(timeout)

    def release(self, connection_id: str) -> None:
        with self._lock:
            _, released = self._held.pop(connection_id)
        released.set()

    # --- what tests read ------------------------------------------------------------------------

    def raw(self, connection_id: str) -> list[bytes]:
        with self._lock:
            return list(self._messages.get(connection_id, []))

    def messages(self, connection_id: str) -> list[dict[str, Any]]:
        """Every message delivered to the connection, decoded from JSON, oldest first."""
        return [json.loads(body) for body in self.raw(connection_id)]

    def delivered(self) -> dict[str, list[dict[str, Any]]]:
        """Every connection that received something, with its messages."""
        with self._lock:
            ids = list(self._messages)
        return {connection_id: self.messages(connection_id) for connection_id in ids}

    def is_open(self, connection_id: str) -> bool:
        with self._lock:
            return connection_id in self._open

    # --- the API --------------------------------------------------------------------------------

    def answer(self, method: str, connection_id: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            held = self._held.get(connection_id)
        if held is not None:
            arrived, released = held
            arrived.set()
            released.wait(30)
        with self._lock:
            self.requests.append((method, connection_id))
            if connection_id not in self._open:
                return _error(410, "GoneException", f"connection {connection_id} is gone")
            if connection_id in self._failing:
                return _error(500, "InternalServerErrorException", "internal server error")
            if method == "POST":
                self._messages.setdefault(connection_id, []).append(body)
                return 200, {}, b""
            if method == "DELETE":
                del self._open[connection_id]
                return 204, {}, b""
            description = {
                "connectedAt": self._open[connection_id],
                "identity": {"sourceIp": "127.0.0.1", "userAgent": "connections-server"},
                "lastActiveAt": self._open[connection_id],
            }
            return 200, {"Content-Type": "application/json"}, json.dumps(description).encode()


def _error(status: int, kind: str, text: str) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json", "x-amzn-ErrorType": kind}
    return status, headers, json.dumps({"message": text}).encode()


def _connection_id(path: str) -> str | None:
    """The id of `/{stage}/@connections/{id}` (or without the stage); None for any other path."""
    parts = [unquote(part) for part in urlsplit(path).path.split("/") if part]
    if len(parts) >= 2 and parts[-2] == "@connections" and len(parts) <= 3:
        return parts[-1]
    return None


def _handler_for(server: ConnectionsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            connection_id = _connection_id(self.path)
            if connection_id is None:
                status, headers, payload = _error(404, "NotFoundException", f"no route for {self.path}")
            else:
                status, headers, payload = server.answer(self.command, connection_id, body)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if payload:
                self.wfile.write(payload)

        do_POST = do_GET = do_DELETE = _serve  # noqa: N815 - http.server's naming

        def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest shows failures
            pass

    return Handler


@pytest.fixture
def connections_server() -> Iterator[ConnectionsServer]:
    server = ConnectionsServer().start()
    yield server
    server.stop()
