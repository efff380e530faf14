"""The fleet: what a kiosk tells the operator and how it listens to them.

- :mod:`.heartbeat` — the heartbeat document (its JSON Schema: ``heartbeat.schema.json``)
  built from a :class:`~kiosk.fleet.view.KioskView` of the daemon's state;
- :mod:`.push` — heartbeats POSTed to the fleet, signed with the device's Ed25519 key; only the
  latest is kept while the endpoint is unreachable, the missed ones counted;
- :mod:`.commands` — signed commands in a heartbeat reply: verified, replay-checked, journaled;
- :mod:`.metrics` — Prometheus metrics (prometheus-client), and the Pushgateway push;
- :mod:`.http` — the local endpoints ``/healthz``, ``/heartbeat``, ``/metrics``.
"""
