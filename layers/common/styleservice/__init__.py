"""Code shared by the service's Lambda functions (deployed as a layer, at /opt/python)."""
