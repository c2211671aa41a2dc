"""A whole run, above the training methods it drives.

``resolve.py``: the config made concrete (every plugin it names built once, the quantizers'
defaults filled in) before anything is prepared; ``context.py``: everything a run needs before its
first round (data, splits, model, quantizers, encodings); ``simulator.py``: the in-process driver,
the FedLPP round read top to bottom over a method's server and client parts;
``evaluation.py`` and ``selection.py``: what each round measures and which round the run
reports; ``observers.py`` and ``trace.py``: the console, the timer and the trace on disk, which
watch the driver rather than live inside it; ``trace_check.py`` and ``trace_reader.py``: a
finished run's trace verified and read (what attacks read).
"""
