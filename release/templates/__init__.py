"""Jinja templates shipped with the release layer (package data)."""
