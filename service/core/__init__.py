"""The core of the service, which knows no HTTP: readings in, forecasts and stream state out.

- ``observations``: checked readings, one series (``Observations``) or many streams as
  columns (``Readings``), the form every interface hands the engine.
- ``engine``: the observe engine: one batch, one store round trip (usually), one model call
  per round and model, one compare-and-set.
- ``streams``: the streams of one record kind as columns while a batch applies to them.
- ``gaps``: the gap policies.
- ``answers``: what a client is told (``Forecast``, ``StreamView``, ``ObserveResult``), built
  in one place.
- ``calls``: one model call, timed and counted.
- ``cache``: the bounded cache of the records this process last read or wrote.
"""
