"""Early warning beyond single results: pure detectors over screened records (no faust, no I/O).

Every detector module exposes ``step(state, records, watermark, params, due=None) -> Step`` and
``wake_of(key, value, params)``. ``state`` is a read-only mapping (a Faust table in the worker, a
dict in tests) from the detector's key to a compact JSON-able value, read by key only; ``records``
are the batch's new (de-duplicated) screened records; ``watermark`` is the event time (epoch
seconds) up to which windows are closed; ``due`` are the keys whose wake time the watermark passed
(the engine's schedule, ``agents/early/schedule.py``; None: found by scanning, for tests).
``Step.updates`` holds each changed key once (``None`` = delete), ``Step.alerts`` the alerts to
publish, ``Step.wake`` when each visited key must next be visited without new records.
``wake_of`` gives the same from a stored value (the schedule is rebuilt from it after a restart);
``from_v1`` converts a value stored before issue 21. See README "Early warning".
"""
