"""Kiosk firmware."""
