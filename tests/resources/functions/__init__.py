"""Functions a test job names that fail on purpose, each its own way."""
