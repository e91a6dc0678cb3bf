"""template.yaml as data, for the tests: stylelocal.template (the local stack reads the template
through the same code)."""

from stylelocal.template import ROOT, TEMPLATE, Resolver, function, load, parameter_defaults, resources

__all__ = ["ROOT", "TEMPLATE", "Resolver", "function", "load", "parameter_defaults", "resources"]
