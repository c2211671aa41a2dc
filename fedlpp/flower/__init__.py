"""FedLPP on Flower (message API, flwr 1.42): the same server object and client step as the
in-process simulator, with the broadcast and the uploads carried as Flower messages.

- :mod:`fedlpp.flower.messages`: the packed bytes and their metadata as Flower records (pure);
- :mod:`fedlpp.flower.client_app`: the ``ClientApp`` (each message runs the method's client step);
- :mod:`fedlpp.flower.server_app`: the ``ServerApp`` (the simulator's round over a Flower grid:
  same validation, aggregation rules, defenses, evaluation and trace);
- :mod:`fedlpp.flower.simulation`: an in-process Flower simulation from Python
  (``fedlpp train --engine flower``).

``flwr run`` and a deployment (``flower-superlink`` + ``flower-supernode``) use the app in
``flower-app/`` at the repository root; see the README.
"""
