"""Analysts' read-only queries: the guard every statement goes through (``guard.py``, its function
allow-list in ``functions.py``), the worker's query port (``server.py``), the client side used by
``foodrisk query``, ``foodrisk redlist`` and ``foodrisk run`` (``client.py``) and the output formats
(``render.py``).
"""
