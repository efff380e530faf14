"""Local stand-ins for the payment providers, for ``kiosk demo``, the tests and ``kiosk sandbox``.

Never used by the daemon's own path. :func:`start_sandbox` runs every provider sandbox behind
one loopback HTTP server (see :mod:`kiosk.sandbox.server` for routing and test hooks and
:mod:`kiosk.sandbox.payby` for PayBy).
"""

from kiosk.sandbox.server import Sandbox, serve_forever, start_sandbox

__all__ = ["Sandbox", "serve_forever", "start_sandbox"]
