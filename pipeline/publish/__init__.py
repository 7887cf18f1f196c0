"""`foodrisk publish`: a period's results as a regulator publishes them, as a static site.

``tally`` (the rules: who is named, what counts as a pass) and ``page`` (HTML, CSV and JSON) are
pure: they take plain rows and return values. ``command`` is the shell that reads ClickHouse and
writes the files.
"""
