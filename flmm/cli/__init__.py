"""Command-line entry points: thin argument parsers over the library."""
