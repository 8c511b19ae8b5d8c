"""Real-time gateway (docs/realtime.md): live board and MDT websockets with snapshot +
gap-free resume from the event log, AVL ingest, and the hub (memory | Redis).

Public names: ``ws_gateway.ports.GatewayPorts`` (what the app hands in),
``ws_gateway.lifecycle`` (``start``/``stop`` for the app lifespan, ``wake_tailers``),
``ws_gateway.api.router`` (``/ws/board``, ``/ws/unit/{unit_id}``, positions, track, stats,
``/asyncapi.json``), ``ws_gateway.hub`` (``Hub``, ``MemoryHub``, ``RedisHub``,
``create_hub``), ``ws_gateway.gateway.Gateway``. The wire format is in ``schemas.realtime``
and ``schemas.events``.
"""
