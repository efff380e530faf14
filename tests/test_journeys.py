import pytest

from kiosk.journeys import JOURNEYS, TERMINAL, Journey


@pytest.mark.parametrize("journey", JOURNEYS.values(), ids=lambda j: j.name)
def test_state_machine_is_well_formed(journey: Journey) -> None:
    states = journey.states
    assert journey.initial in journey.edges
    for terminal in TERMINAL & states:
        assert terminal not in journey.edges, f"{terminal} must have no way out"
    # every state is reachable from the initial state, and every state can end
    seen, todo = {journey.initial}, [journey.initial]
    while todo:
        for nxt in journey.edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == states - journey.legacy
    assert journey.legacy <= set(journey.edges)
    for state in states - TERMINAL:
        assert state in journey.recovery, f"{state} has no recovery rule"
        reach, todo = set(), [state]
        while todo:
            for nxt in journey.edges.get(todo.pop(), ()):
                if nxt not in reach:
                    reach.add(nxt)
                    todo.append(nxt)
        assert reach & TERMINAL, f"{state} can never end"


def test_every_journey_module_of_the_registry_is_drawn() -> None:
    assert set(JOURNEYS) == {
        "payby_cashin",
        "payby_cashout",
        "paysera_cashin",
        "paysera_cashout",
        "rapyd_cashin",
        "rapyd_cashout",
        "cashii_cashout",
        "local_cashout",
        "cash_collection",
        "cash_refill",
    }


def test_money_in_journeys_can_end_owed() -> None:
    for j in JOURNEYS.values():
        if j.direction == "in":
            assert "owed" in j.states, j.name
