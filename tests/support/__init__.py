"""Test support: emulators, the SSH test fleet, in-process helpers. Never installed."""
