"""How the deploy tooling acts on the world: commands (docker, sam) and AWS API calls, each printed
before it runs. In a dry run nothing runs and no AWS call is made: the commands are printed, and
the calls that read something answer with placeholders (`<ACCOUNT>`, `<ImagesBucketName>`), so a
dry run walks the very code path of a real one."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[2]  # deploy/styledeploy/runner.py -> the repository

# What a dry run's reads answer: enough for every later step to print its command.
PLACEHOLDER_OUTPUTS = ("WebSocketUrl", "SiteUrl", "DistributionId", "ImagesBucketName", "WorkerLogGroup")


class DeployError(Exception):
    """A step that must not go on, with what to do about it: the command prints it and exits 1."""


def placeholder(name: str) -> str:
    return f"<{name}>"


@dataclass
class Runner:
    """Runs (or, in a dry run, only prints) commands and AWS calls. `printed` keeps every line."""

    region: str
    dry_run: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    client_factory: Callable[[str], Any] | None = None  # service -> boto3 client (tests: moto)
    printed: list[str] = field(default_factory=list)
    _clients: dict[str, Any] = field(default_factory=dict)

    def say(self, line: str) -> None:
        self.printed.append(line)
        print(line, file=self.out, flush=True)

    def run(
        self, argv: Sequence[str], *, stdin: str | None = None, env: Mapping[str, str] | None = None,
        shown_stdin: str | None = None, secrets: Sequence[str] = (), failed: str = "",
    ) -> None:  # fmt: skip
        """A command, from the repository root; `stdin` (a password) and `secrets` are never printed.
        A command that fails (or cannot be found) raises DeployError, starting with `failed` (what
        it means for the deploy) when given: the command's own output is above it."""
        line = "$ " + shlex.join(argv)
        for secret in secrets:
            if secret:
                line = line.replace(secret, "***")
        if stdin is not None:
            line += f"  < {shown_stdin or '(stdin)'}"
        self.say(line)
        if self.dry_run:
            return
        self._run(argv, failed, input=stdin, env={**os.environ, **(env or {})})

    def output(self, argv: Sequence[str], *, read: str, failed: str = "") -> str:
        """A command's standard output (its errors go to the terminal); `read` in a dry run."""
        self.say("$ " + shlex.join(argv))
        if self.dry_run:
            return read
        return self._run(argv, failed, stdout=subprocess.PIPE).stdout

    def _run(self, argv: Sequence[str], failed: str, **options: Any) -> subprocess.CompletedProcess[str]:
        what = f"`{shlex.join(argv[:2])}`"
        prefix = f"{failed}: " if failed else ""
        try:
            return subprocess.run(list(argv), text=True, cwd=ROOT, check=True, **options)
        except FileNotFoundError:
            raise DeployError(f"{prefix}{argv[0]} was not found: is it installed and on PATH?") from None
        except subprocess.CalledProcessError as failure:
            raise DeployError(f"{prefix}{what} exited with status {failure.returncode} (its output is above)") from None

    def client(self, service: str) -> Any:
        if service not in self._clients:
            if self.client_factory is not None:
                self._clients[service] = self.client_factory(service)
            else:
                import boto3

                self._clients[service] = boto3.client(service, region_name=self.region)
        return self._clients[service]

    def call(self, service: str, operation: str, *, read: Any = None, quiet: bool = False, **params: Any) -> Any:
        """An AWS API call, printed as `aws <service> <operation> <params>` (bodies as their size).
        In a dry run it returns `read` (the placeholder answer of a read) and calls nothing."""
        if not quiet:
            shown = {k: (f"<{len(v)} bytes>" if isinstance(v, bytes) else v) for k, v in params.items()}
            line = f"aws {service} {operation}"
            self.say(f"{line} {json.dumps(shown, default=str)}" if shown else line)
        if self.dry_run:
            return read if read is not None else {}
        return getattr(self.client(service), operation)(**params)
