"""Fuzzing: hostile input for the kiosk's readers, long runs behind ``kiosk bench fuzz``."""
