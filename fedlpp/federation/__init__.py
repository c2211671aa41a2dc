"""The FedLPP round engine.

``server.py`` (the master, its broadcasts, aggregation of uploads) and ``client.py`` (decode ->
train -> encode) are the engine-agnostic parts; ``wire.py`` is the bytes both ways;
``simulator.py`` drives them in one process, observed by ``trace.py`` and ``observers.py``;
``context.py`` prepares a run; ``aggregate.py`` is the pure server-side maths.
"""
