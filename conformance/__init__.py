"""Conformance cases and runner."""
