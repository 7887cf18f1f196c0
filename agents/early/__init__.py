"""Early warning beyond single results: pure detectors over screened records (no faust, no I/O).

Every detector module exposes ``step(state, records, watermark, params) -> Step``: ``state`` is a
read-only mapping (a Faust table in the worker, a dict in tests) from the detector's key to a
JSON-able value, ``records`` are the batch's new (de-duplicated) screened records, ``watermark`` is
the event time (epoch seconds) up to which windows are closed. ``Step.updates`` holds each changed
key once (``None`` = delete), ``Step.alerts`` the alerts to publish. See README "Early warning".
"""
