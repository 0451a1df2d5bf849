"""The built-in demo inventory (package data)."""
