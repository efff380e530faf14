"""Customer journeys as state machines over the journal."""
