"""Probers: each returns a reading or a typed failure for one target."""
