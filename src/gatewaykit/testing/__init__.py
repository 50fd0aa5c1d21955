"""Test doubles for gateway-native code.

:class:`MockGateway` is an OpenAI-compatible upstream with scripted behaviour that also looks like
a LiteLLM proxy (its headers, error bodies and virtual-key checks), so routers, chat models and
LangChain's standard test suites can run offline::

    from gatewaykit.testing import Behavior, MockGateway

    with MockGateway() as gw:
        gw.script("flaky", [Behavior(status=500), Behavior()])
        ...
"""

from gatewaykit.testing._app import MockApp
from gatewaykit.testing.app_server import AppServer
from gatewaykit.testing.behavior import ERROR_KINDS, Behavior, ErrorKind, RecordedRequest
from gatewaykit.testing.gateway import MockGateway

__all__ = [
    "ERROR_KINDS",
    "AppServer",
    "Behavior",
    "ErrorKind",
    "MockApp",
    "MockGateway",
    "RecordedRequest",
]
