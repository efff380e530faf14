"""``kiosk sim fleet``: many simulated kiosks in one asyncio process, each pushing signed
heartbeats (and its metrics to a Pushgateway) from a seeded random walk of its state, to test a
fleet side at scale on one machine (:mod:`.walk` the kiosks, :mod:`.runner` the fleet,
:mod:`.command` the command line). No daemon, no devices, no journal: a :class:`SimKiosk` is
only the :class:`~kiosk.fleet.view.KioskView` a real kiosk would build, walked in time.

Wiring::

    world = World(seed)                          # provider outages every kiosk sees at once
    k = SimKiosk(1, seed, world=world)           # "SIM-00001", its own fresh Ed25519 key
    activity = k.step(60.0)                      # 60 s of customers and faults
    k.view(), k.faults(), k.silent               # what it would send; what is wrong; is it mute

    summary = await run_fleet(1000, url="https://fleet.example/hb", pushgateway=None,
                              interval_s=60, duration_s=600, seed=1)

The walk runs in *fleet time*: seconds since the fleet started (``view().now`` is ``epoch`` plus
that). It depends on the seed, the kiosk's number and the steps' lengths only, never on the wall
clock or the network: the same seed gives the same kiosks in the same states. A step longer
than :data:`MAX_STEP_S` is walked in parts of at most that.

What a kiosk does (rates per kiosk, in :data:`RATES`' words): customers come (3-25 an hour;
journeys of its providers complete, or end refused, cancelled, owed; a few stay pending at the
provider; the outbox queues calls and drains them); the cashbox fills (cash-in); the recycler
drains (cash-out) and is refilled; the paper roll runs near its end then out; notes jam; the
cashbox fills up; a provider stops answering for a while (the kiosk's link, or the provider
itself: then at every kiosk at once); the clock drifts until NTP catches it; liabilities open
(a short payout) and are settled hours later; the kiosk goes silent (its link, or its power:
it comes back rebooted, ``seq`` and uptime from zero). A technician comes some minutes after
a fault that needs one (a jam, paper out, a full cashbox), hours after one that can wait, and
now and then for routine service: the door opens (service mode), everything is fixed, the door
closes, and the kiosk waits for the green button. Reasons are the daemon's words.

The runner (:func:`run_fleet`): one ``httpx.AsyncClient`` for all, each kiosk its own
:class:`~kiosk.fleet.push.HeartbeatPusher` (signed with its own key) and, with a Pushgateway,
its own :class:`~kiosk.fleet.metrics.Metrics` (counters from its walk's journeys); at most
``concurrency`` requests in flight; kiosks start spread over the first interval. Without a
fleet URL each heartbeat is still built, signed and checked (its signature, and the JSON Schema
when ``jsonschema`` is installed): a dry run. The fleet sees many kiosks on few connections.
"""

from kiosk.fleet.sim.command import add_sim_parser, cmd_sim_fleet
from kiosk.fleet.sim.runner import SimFleetError, Summary, check_url, run_fleet, write_keys
from kiosk.fleet.sim.walk import (
    DOOR_OPEN,
    FAULT_WORDS,
    JOURNEYS,
    PAPER_OUT,
    SERVICE_WAIT,
    Fault,
    SimKiosk,
    World,
    no_provider,
)

__all__ = [
    "DOOR_OPEN",
    "FAULT_WORDS",
    "JOURNEYS",
    "PAPER_OUT",
    "SERVICE_WAIT",
    "Fault",
    "SimFleetError",
    "SimKiosk",
    "Summary",
    "World",
    "add_sim_parser",
    "check_url",
    "cmd_sim_fleet",
    "no_provider",
    "run_fleet",
    "write_keys",
]
