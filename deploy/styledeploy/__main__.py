"""python -m styledeploy {deploy,smoke,destroy,env-vars} --stack NAME --region REGION [...]: see
docs/deployment.md. The Makefile's deploy, smoke, destroy and env-vars targets call this."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.request
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from .deploy import deploy, stack_outputs
from .destroy import destroy
from .env_vars import env_vars
from .names import check_stack_name
from .runner import ROOT, DeployError, Runner
from .smoke import KEEPALIVE_SECONDS, SIZE, SmokeError, smoke


def stack_name(text: str) -> str:
    """--stack, refused here (before any AWS call) when AWS would refuse a name derived from it."""
    try:
        return check_stack_name(text)
    except ValueError as bad:
        raise argparse.ArgumentTypeError(str(bad)) from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m styledeploy", description=__doc__.split(":")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, what in (("deploy", "build, push and deploy everything; re-runnable"),
                       ("smoke", "a real client's round trip through a running stack"),
                       ("destroy", "delete the stack and everything deploy made"),
                       ("env-vars", "write `sam local invoke --env-vars` for the deployed stack")):  # fmt: skip
        command = commands.add_parser(name, help=what)
        command.add_argument(
            "--stack", default="style-transfer", type=stack_name, help="the stack's name (default: %(default)s)"
        )
        command.add_argument("--region", default="us-east-1", help="the AWS region (default: %(default)s)")
        if name != "smoke":
            command.add_argument("--dry-run", action="store_true", help="print every command and AWS call; run none")
    deploy_ = commands.choices["deploy"]
    deploy_.add_argument("--sam", default="sam", help="the SAM CLI to run (make deploy: .venv-sam/bin/sam)")
    deploy_.add_argument(
        "--parameter", action="append", default=[], metavar="NAME=VALUE",
        help="a stack parameter (repeatable); parameters not given keep their deployed values",
    )  # fmt: skip
    deploy_.add_argument(
        "--force", action="store_true",
        help="deploy even when the account's GPU quota cannot run one job (make deploy FORCE=1)",
    )  # fmt: skip
    commands.choices["destroy"].add_argument("--yes", action="store_true", help="do not ask for confirmation")
    env_vars_ = commands.choices["env-vars"]
    env_vars_.add_argument("--output", type=Path, default=ROOT / "out" / "env-vars.json",
                           help="the file to write (default: out/env-vars.json)")  # fmt: skip
    env_vars_.add_argument("--access-key", help="the stack's AccessKey (NoEcho: the stack cannot give it back)")
    smoke_ = commands.choices["smoke"]
    smoke_.add_argument("--url", help="the WebSocket URL (default: the stack's WebSocketUrl output)")
    smoke_.add_argument("--site", help="a site whose config.json names the WebSocket URL (e.g. http://127.0.0.1:8000)")
    smoke_.add_argument("--key", help="the stack's AccessKey, if it has one")
    smoke_.add_argument("--style", help="the catalogue style to use (default: the first)")
    smoke_.add_argument(
        "--size", type=int, default=SIZE, help="the results' size in px (default: %(default)s, the smallest)"
    )
    smoke_.add_argument(
        "--keepalive", type=float, default=KEEPALIVE_SECONDS, metavar="SECONDS",
        help="while a job runs, each client sends a request this often, as API Gateway closes connections idle "
             "for 10 minutes (default: %(default)g; 0: never, and rely on reconnecting)",
    )  # fmt: skip
    smoke_.add_argument(
        "--job-timeout", type=float, default=900,
        help="seconds a job may take (default: %(default)s; the first job after a while starts a GPU instance)",
    )  # fmt: skip
    return parser.parse_args(argv)


def websocket_url(args: argparse.Namespace) -> str:
    if args.url:
        return args.url
    if args.site:
        with urllib.request.urlopen(f"{args.site.rstrip('/')}/config.json", timeout=30) as response:
            return json.load(response)["websocketUrl"]
    return stack_outputs(Runner(args.region), args.stack)["WebSocketUrl"]


def write_env_vars(args: argparse.Namespace) -> None:
    runner = Runner(args.region, dry_run=args.dry_run)
    text = json.dumps(env_vars(runner, args.stack, access_key=args.access_key), indent=2, sort_keys=True) + "\n"
    if args.dry_run:  # nothing is written: the placeholders show what would be
        print(text, end="")
        return
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    shown = args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output
    runner.say(f"# wrote {shown}; for example (it acts on the deployed stack, with your credentials):")
    runner.say(f"$ sam local invoke ListStylesFunction -e events/list_styles/list.json --env-vars {shown}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "deploy":
            deploy(
                Runner(args.region, dry_run=args.dry_run),
                args.stack,
                sam=args.sam,
                parameters=args.parameter,
                force=args.force,
            )
        elif args.command == "destroy":
            return 0 if destroy(Runner(args.region, dry_run=args.dry_run), args.stack, yes=args.yes) else 1
        elif args.command == "env-vars":
            write_env_vars(args)
        else:
            asyncio.run(smoke(websocket_url(args), key=args.key, style=args.style, job_timeout=args.job_timeout,
                              keepalive=args.keepalive, size=args.size, out=sys.stdout))  # fmt: skip
    except SmokeError as failure:
        print(f"smoke test FAILED: {failure}", file=sys.stderr)
        return 1
    except (DeployError, ClientError, BotoCoreError, ValueError) as failure:
        print(f"styledeploy {args.command}: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
