"""The plugin host: driver discovery (stevedore) and lifecycle hooks (pluggy).

``PLUGIN_API_VERSION`` is the version of the contracts that plugins implement (backend, source,
policy, hooks). A plugin declares ``api_version`` = the version it was written against; the core
loads it when ``MIN_PLUGIN_API_VERSION <= api_version <= PLUGIN_API_VERSION``. Adding a primitive
or changing a contract bumps ``PLUGIN_API_VERSION``; dropping support for old plugins raises the
minimum.
"""

from __future__ import annotations

PLUGIN_API_VERSION = 1
MIN_PLUGIN_API_VERSION = 1

__all__ = ["MIN_PLUGIN_API_VERSION", "PLUGIN_API_VERSION"]
