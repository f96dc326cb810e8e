"""The ``pennyworth`` command-line tool."""
