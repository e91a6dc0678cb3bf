"""The stack's name, checked before anything reaches AWS: the names the stack derives from it must be
names AWS accepts, or a deploy fails half-way (after the image is built, or mid-stack).

What the stack name becomes (template.yaml and image.repository_name):

- the worker's ECR repository `<stack>-worker`: ECR takes lower-case letters, digits and single
  separators between them (`[a-z0-9]+(?:[._-][a-z0-9]+)*`), so no capitals, no `--`, no trailing `-`;
- the CloudFront Function `<stack>-site-index`: at most 64 characters, so the stack has at most 53;
- the CloudFormation stack itself: a letter first, then letters, digits and hyphens.

Together: a lower-case letter, then lower-case letters and digits, with single hyphens between
them, 53 characters at most.
"""

from __future__ import annotations

import re

LONGEST_DERIVED_SUFFIX = "-site-index"  # the CloudFront Function's name, whose limit is 64
MAX_STACK_NAME = 64 - len(LONGEST_DERIVED_SUFFIX)
STACK_NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")


def check_stack_name(name: str) -> str:
    """`name` if the stack and every name derived from it are valid in AWS; else ValueError saying why."""
    if not STACK_NAME.fullmatch(name):
        if name.lower() != name:
            why = "it has capital letters, and ECR refuses them in the worker's repository name"
            hint = f" (try {name.lower()!r})" if STACK_NAME.fullmatch(name.lower()) else ""
        else:
            why = "it must start with a letter and hold only letters, digits and single hyphens between them"
            hint = ""
        raise ValueError(f"the stack name {name!r} cannot be used: {why}{hint}")
    if len(name) > MAX_STACK_NAME:
        raise ValueError(
            f"the stack name {name!r} is {len(name)} characters long: at most {MAX_STACK_NAME}, as the "
            f"CloudFront Function '<stack>{LONGEST_DERIVED_SUFFIX}' may have 64"
        )
    return name
