"""The one error type a user sees: a single line naming the bad value and what was allowed."""


class FedlppError(ValueError):
    """A bad input (config key, value, path, missing package). The CLI prints it and exits 2."""


def require_package(module: str, *, install: str, purpose: str) -> None:
    """Raise a FedlppError with the install command when an optional package is missing.

    Args:
        module: importable module name, e.g. ``"flwr"``.
        install: the pip command that brings it, e.g. ``"pip install 'fedlpp-bench[flower]'"``.
        purpose: what needs it, for the message.
    """
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise FedlppError(f"{purpose} needs the package '{module}', which is not installed: run `{install}`")
