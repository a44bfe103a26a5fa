"""The MQTT bridge: readings in from a broker, forecasts out to it, through the one engine.

- ``settings``: the ``FORECAST_MQTT_*`` settings (part of ``service.settings.Settings``);
- ``topics``: readings patterns (which stream a topic is for) and answer topics;
- ``payloads``: a message's readings, decoded as the REST observe body is;
- ``connection``: the broker URL as client options (TLS, credentials);
- ``instruments``: its Prometheus counters;
- ``bridge``: the ``Bridge`` itself, with reconnection, started by the app when
  ``FORECAST_MQTT_URL`` is set, or on its own by ``forecast-service mqtt``.

Nothing here imports the MQTT client until a bridge starts.
"""
