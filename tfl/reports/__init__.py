"""Reports: the HTML page written beside every run and search."""
