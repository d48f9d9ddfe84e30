"""Reports: the HTML page written beside every run and search.

This package module stays light (the command line reads its constants for `--help`).
"""

MAX_MISTAKES = 16  # the most confident mistakes drawn in a run's report
