"""The stack in a real AWS account: `make deploy` (deploy.py), `make smoke` (smoke.py) and
`make destroy` (destroy.py), run as `python -m styledeploy`. docs/deployment.md describes them."""
