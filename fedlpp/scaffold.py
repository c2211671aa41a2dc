"""``fedlpp new attack|defense NAME``: a ready plugin package in a folder of its own.

The package has a ``pyproject.toml`` declaring the plugin's entry point (``fedlpp.attacks`` or
``fedlpp.defenses``), the plugin module (a working plugin with one option, to edit), a test of
it and a README. ``pip install -e DIR`` installs it; ``fedlpp ls attacks`` (or ``defenses``)
then lists it, and ``fedlpp ls attacks NAME`` shows its option.
"""

from __future__ import annotations

import re
from pathlib import Path

from fedlpp.errors import FedlppError

KINDS = ("attack", "defense")
NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")

PYPROJECT = '''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "The {kind} {name!r}: a fedlpp-bench plugin"
requires-python = ">=3.11"
dependencies = ["fedlpp-bench"]

[project.optional-dependencies]
test = ["pytest>=8"]

# fedlpp discovers {kind}s in this entry-point group: loading the entry point imports the
# module, whose @{registry}.register("{name}") decorator adds the {kind}.
[project.entry-points."fedlpp.{kind}s"]
"{name}" = "{package}"

[tool.setuptools]
packages = ["{package}"]
'''

ATTACK = '''"""The membership attack ``{name}``: each record's score is the mean of its tokens' log-probs
under the target model, each clipped below at ``-clip`` (a few unlikely tokens then weigh less).

Records the model was trained on (members) tend to score higher. Edit :meth:`score`: it gets
the target model's signals on the candidate records (``target.token_logprobs``: one array per
record; ``token_mu`` / ``token_sigma``: the mean and spread of log p under the model's own
next-token distribution) and returns one score per record, higher = more likely a member.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attacks.base import ATTACKS
from attacks.context import Observation
from attacks.membership.base import MembershipAttack, MembershipConfig
from attacks.signals import SampleSignals
from fedlpp.errors import FedlppError


@dataclass
class {cls}Config(MembershipConfig):
    """``clip``: the lowest token log-prob counted (> 0); the options every membership attack
    has (``target``, ``client``, ``max_records``, ``seed``) come with it."""

    clip: float = 20.0  # token log-probs below -clip count as -clip

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.clip > 0:  # NaN fails the comparison too
            raise FedlppError(f"Invalid clip: {{self.clip!r}} for attack '{name}' (allowed: > 0)")


@ATTACKS.register("{name}")
class {cls}(MembershipAttack):
    """Score = mean over tokens of max(log p(x_t | x_<t), -clip)."""

    Config = {cls}Config
    summary = "membership: mean clipped token log-prob ({dist})"

    def score(self, target: SampleSignals, *, obs: Observation, indices: list[int]) -> np.ndarray:
        clip = self.config.clip
        return np.array([float(np.maximum(lp, -clip).mean()) if lp.size else 0.0
                         for lp in target.token_logprobs])
'''

ATTACK_TEST = '''"""The attack ``{name}``: registered under its name, its option checked, its scores."""

import numpy as np
import pytest

from attacks.base import ATTACKS
from attacks.signals import SampleSignals
from fedlpp.errors import FedlppError

import {package}  # noqa: F401 - registers the attack (as its entry point does once installed)


def test_it_is_registered_with_its_option():
    cls = ATTACKS.get("{name}")
    assert cls.__module__ == "{package}" and cls.kind == "membership"
    assert ATTACKS.build("{name}", clip=5.0).config.clip == 5.0
    assert ATTACKS.build("{name}", target="proxy", client=1).threat_model == "client"


@pytest.mark.parametrize("clip", [0.0, -1.0, float("nan")])
def test_a_bad_clip_is_refused(clip):
    with pytest.raises(FedlppError, match="clip"):
        ATTACKS.build("{name}", clip=clip)


def test_scores_are_clipped_mean_log_probs():
    signals = SampleSignals(indices=np.arange(3),
                            token_logprobs=[np.array([-1.0, -3.0]), np.array([-50.0]),
                                            np.zeros(0)],
                            token_mu=[np.zeros(2), np.zeros(1), np.zeros(0)],
                            token_sigma=[np.ones(2), np.ones(1), np.zeros(0)])
    attack = ATTACKS.build("{name}", clip=10.0)
    scores = attack.score(signals, obs=None, indices=[0, 1, 2])
    assert scores.tolist() == [-2.0, -10.0, 0.0]
'''

DEFENSE = '''"""The defense ``{name}``: the server clips each received update's change from the broadcast
to an L2 norm of at most ``max_norm`` (a boosted or replaced update then pulls the mean less).

Edit the hooks you need (see ``fedlpp.defenses``): ``before_broadcast`` (the tensors about to
be quantized and sent), ``around_training`` (a client's local trainer, e.g. DP-SGD),
``on_update`` (each received update: return the tensors to aggregate, or raise ``Rejected``),
``after_aggregate`` (the mean before it updates the master); ``report()`` goes into
``result.json``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from fedlpp.defenses import DEFENSES, Defense
from fedlpp.errors import FedlppError

Tensors = Mapping[str, torch.Tensor]


@dataclass
class {cls}Config:
    """``max_norm``: the largest L2 norm of an update's change from the broadcast (> 0)."""

    max_norm: float = 1.0  # over all of the update's tensors together

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_norm) and self.max_norm > 0):
            raise FedlppError(f"Invalid max_norm: {{self.max_norm!r}} for defense '{name}' "
                              "(allowed: a finite number > 0)")


def change_norm(tensors: Tensors, broadcast: Tensors) -> float:
    """The L2 norm of ``tensors - broadcast`` over all tensors."""
    return math.sqrt(sum(float((t.float() - broadcast[n].float()).pow(2).sum())
                         for n, t in tensors.items()))


@DEFENSES.register("{name}")
class {cls}(Defense):
    """Clips each update's change from the broadcast to L2 norm `max_norm`."""

    Config = {cls}Config

    def __init__(self, config: {cls}Config | None = None) -> None:
        super().__init__(config)
        self.seen = 0
        self.clipped = 0

    def on_update(self, rnd: int, client: int, tensors: Tensors, *, broadcast: Tensors) -> Tensors:
        self.seen += 1
        norm = change_norm(tensors, broadcast)
        if norm <= self.config.max_norm:
            return tensors
        self.clipped += 1
        scale = self.config.max_norm / norm
        return {{n: (broadcast[n].float() + scale * (t.float() - broadcast[n].float())).to(t.dtype)
                for n, t in tensors.items()}}

    def report(self) -> dict[str, Any]:
        return {{"updates": self.seen, "clipped": self.clipped}}
'''

DEFENSE_TEST = '''"""The defense ``{name}``: registered under its name, its option checked, its clipping."""

import math

import pytest
import torch

from fedlpp.defenses import DEFENSES
from fedlpp.errors import FedlppError

import {package}  # noqa: F401 - registers the defense (as its entry point does once installed)


def test_it_is_registered_with_its_option():
    assert DEFENSES.get("{name}").__module__ == "{package}"
    assert DEFENSES.build("{name}", max_norm=2.0).config.max_norm == 2.0


@pytest.mark.parametrize("max_norm", [0.0, -1.0, float("inf"), float("nan")])
def test_a_bad_max_norm_is_refused(max_norm):
    with pytest.raises(FedlppError, match="max_norm"):
        DEFENSES.build("{name}", max_norm=max_norm)


def test_a_large_update_is_clipped_and_a_small_one_kept():
    defense = DEFENSES.build("{name}", max_norm=1.0)
    sent = {{"a": torch.zeros(2), "b": torch.ones(1)}}
    small = {{"a": torch.tensor([0.6, 0.0]), "b": torch.ones(1)}}
    assert defense.on_update(1, 0, small, broadcast=sent) is small
    large = {{"a": torch.tensor([3.0, 4.0]), "b": torch.ones(1)}}
    clipped = defense.on_update(1, 1, large, broadcast=sent)
    assert torch.allclose(clipped["a"], torch.tensor([0.6, 0.8]))
    assert math.isclose({package}.change_norm(clipped, sent), 1.0, rel_tol=1e-6)
    assert defense.report() == {{"updates": 2, "clipped": 1}}
'''

README = '''# {dist}

The {kind} `{name}`, a plugin for fedlpp-bench in its own package (made by `fedlpp new {kind}
{name}`). Install it next to fedlpp-bench and fedlpp finds it:

```bash
pip install --no-deps -e .          # in the environment fedlpp-bench is installed in
fedlpp ls {kind}s                   # lists `{name}`, with its module
fedlpp ls {kind}s {name}            # its options, their types and defaults
{use}
python -m pytest tests              # its tests
```

How it plugs in: `pyproject.toml` declares an entry point in the group `fedlpp.{kind}s`; fedlpp
imports that module on the first use of its {kind} registry, and the module's
`@{registry}.register("{name}")` adds the class. Edit `{package}/__init__.py` (its docstring
says where to start) and its test; rename the {kind} in both and in `pyproject.toml`.
'''

USE = {
    "attack": "fedlpp attack RUN_DIR --attack {name} --set {name}.clip=10   # on a trained run",
    "defense": 'fedlpp train --out runs/x --set \'defenses=[{{name = "{name}", max_norm = 1.0}}]\'',
}


def names(kind: str, name: str) -> dict[str, str]:
    """The names a plugin package of ``kind`` called ``name`` uses (distribution, module, class)."""
    if kind not in KINDS:
        raise FedlppError(f"Invalid kind: {kind!r} (allowed: {', '.join(KINDS)})")
    if not NAME.fullmatch(name):
        raise FedlppError(f"Invalid NAME: {name!r} (allowed: lower-case letters, digits and "
                          "single '-' between them, starting with a letter, e.g. my-attack)")
    return {"kind": kind, "name": name, "dist": f"fedlpp-{name}",
            "package": "fedlpp_" + name.replace("-", "_"),
            "cls": "".join(part.capitalize() for part in name.split("-")),
            "registry": "ATTACKS" if kind == "attack" else "DEFENSES"}


def files(kind: str, name: str) -> dict[str, str]:
    """Path in the package -> text, for a new ``kind`` plugin called ``name``."""
    n = names(kind, name)
    module, test = (ATTACK, ATTACK_TEST) if kind == "attack" else (DEFENSE, DEFENSE_TEST)
    return {
        "pyproject.toml": PYPROJECT.format(**n),
        f"{n['package']}/__init__.py": module.format(**n),
        f"tests/test_{n['package']}.py": test.format(**n),
        "README.md": README.format(**n, use=USE[kind].format(**n)),
    }


def write(kind: str, name: str, out: Path) -> list[Path]:
    """Write the package into ``out`` (new, or an empty folder); the paths written."""
    made = files(kind, name)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FedlppError(f"--out {str(out)!r} exists and is not an empty folder: choose a new "
                          "one")
    written = []
    for rel, text in made.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
