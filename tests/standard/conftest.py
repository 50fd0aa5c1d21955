"""One MockGateway for the langchain-tests standard suites (it stands for the providers)."""

from __future__ import annotations

import atexit

from gatewaykit.testing import MockGateway

_GATEWAY: MockGateway | None = None


def shared_gateway() -> MockGateway:
    global _GATEWAY
    if _GATEWAY is None:
        _GATEWAY = MockGateway(record=False)
        _GATEWAY.start()
        atexit.register(_GATEWAY.stop)
    return _GATEWAY
