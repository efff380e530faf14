"""Simulated hardware for ``kiosk --simulate``, the demo and the tests, and the control channel
another process uses to play the customer and the technician (:mod:`drivers.sim.control`).
Never used on the daemon's hardware path."""

from drivers.sim.control import SimControl, SimRig, serve_control

__all__ = ["SimControl", "SimRig", "serve_control"]
