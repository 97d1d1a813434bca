"""alignzoo: a zoo of alignment (RLHF) algorithms on one core.

Importing this package is cheap and loads no plugins; the CLI loads them (``alignzoo.plugins.load``).
Public API for plugin authors: ``hookimpl``, ``alignzoo.registry``, ``alignzoo.ops``, ``alignzoo.record``,
``alignzoo.training``, ``alignzoo.rollout``, ``alignzoo.errors``, ``alignzoo.testing`` (see docs/plugins.md).
"""

from alignzoo.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
