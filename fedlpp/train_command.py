"""What ``fedlpp train`` and ``fedlpp.train`` share: the checks that write nothing, and the run
written into its folder under the folder's lock.

Each check's error names the command's flags (``--out``) or, with ``api``, the Python arguments
(``out``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedlpp.errors import FedlppError

ENGINES = ("simulator", "flower")
# what `fedlpp train` and `fedlpp attack` write into a run folder: what --overwrite removes
RUN_FILES = ("result.json", "config.json", "trace", "attacks")


def finished(path: Path) -> bool:
    """Whether ``path`` is the result.json of a finished run (one that cannot be read is not)."""
    from fedlpp.io import read_json

    try:
        result = read_json(path, what="a run's result (JSON)")
    except FedlppError:
        return False
    return isinstance(result, dict) and result.get("status") == "ok"


def check_train(cfg: Any, *, out: Path, engine: str, overwrite: bool, api: bool = False) -> None:
    """Every check of a train command that writes nothing: the config's plugins, the engine,
    the folder (``api``: errors name the Python arguments instead of the command's flags)."""
    from fedlpp.outdir import check_folder
    from fedlpp.run.resolve import resolve

    flag, engine_flag, again = (("out", "engine", "overwrite=True") if api
                                else ("--out", "--engine", "--overwrite"))
    resolve(cfg)  # every plugin the config names
    if engine not in ENGINES:
        raise FedlppError(f"Invalid {engine_flag}: {engine!r} (allowed: {', '.join(ENGINES)})")
    if engine == "flower":
        from fedlpp.flower.server_app import check_engine

        check_engine(cfg)
    # new, empty or a training run: never someone else's folder
    check_folder(out, "train", **({"flag": "out"} if api else {}))
    if finished(out / "result.json") and not overwrite:
        raise FedlppError(f"{flag} {str(out)!r} already holds a finished run (result.json); "
                          f"choose another directory or pass {again}")


def write_run(cfg: Any, *, out: Path, engine: str, overwrite: bool, quiet: bool,
              api: bool = False, ctx: Any = None) -> dict[str, Any]:
    """Under ``out``'s lock: :func:`check_train` again (now that no other command can write
    there), the previous run's files removed (an unfinished run, or a finished one under
    ``overwrite``), the folder marked, the accepted config written, then the run on ``engine``
    (``ctx``: the simulator's prepared data and model, or None). Returns the run's result; a run
    that started, then failed raises :class:`~fedlpp.run.simulator.RunFailed`."""
    from fedlpp.io import atomic_write_json
    from fedlpp.outdir import locked, mark, remove_written
    from fedlpp.run.simulator import run_federation

    with locked(out, **({"flag": "out"} if api else {})):
        check_train(cfg, out=out, engine=engine, overwrite=overwrite, api=api)
        remove_written(out, RUN_FILES)
        mark(out, "train")
        atomic_write_json(out / "config.json", cfg.to_dict())  # the accepted run's config
        if engine == "flower":
            from fedlpp.flower.simulation import run_flower_simulation

            return run_flower_simulation(cfg, out=out, quiet=quiet)
        return run_federation(cfg, out=out, quiet=quiet, ctx=ctx)
