"""Results coming in, and who may send them: the device port's HTTP ingest (``views.py``, with the
API's contract, OpenAPI document and docs page in ``openapi.py``), ``foodrisk import`` of CSV and LIMS
exports (``importer.py``, the column mapping in ``csv_mapping.py``), and the bearer-token registries
of devices and analysts (``tokens.py``, managed with ``foodrisk devices`` / ``foodrisk analysts``).
"""
