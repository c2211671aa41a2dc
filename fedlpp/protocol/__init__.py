"""The round's vocabulary, shared by every part that takes part in a round.

``records.py``: the typed records of a run (a local step, a client's update, an upload, the
server's verdict on it, a round, the whole run; ``to_dict()`` is the ``result.json`` schema).
``wire.py``: the bytes both ways (the broadcast payload and a client's upload, with its header,
layout and checksum). Nothing here trains, aggregates or runs: plugins (adversaries, defenses),
the engine's parts and the drivers all speak it, so it sits below all of them.
"""
