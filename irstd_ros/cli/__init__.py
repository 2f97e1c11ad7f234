"""Command-line entry points. Each prints a one-line error and exits 2 on bad input."""
