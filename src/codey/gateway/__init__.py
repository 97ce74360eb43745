"""Policies every request passes on its way to a backend."""
