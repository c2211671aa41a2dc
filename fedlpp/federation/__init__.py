"""The round engine's parts, below the training methods that assemble them.

``server.py`` (the master, its broadcasts, aggregation of uploads) and ``client.py`` (decode ->
train -> encode) are engine-agnostic: the in-process simulator (:mod:`fedlpp.run.simulator`) and
the Flower apps (:mod:`fedlpp.flower`) drive the same objects. ``broadcast.py`` quantizes and
packs the master; ``validate.py`` checks each received update; ``master_update.py`` is the
weighted mean and the straight-through update of the master. The bytes and records they exchange
are :mod:`fedlpp.protocol`.
"""
