"""A family's training as ``edgevos train`` finds it: the family registry entry's ``training()``.

A family that trains names one :class:`FamilyTraining` in its registry entry
(:class:`edgevos.models.registry.Family`).  ``edgevos train`` declares the options every
family shares (data, backbone, schedule, run control: what
:class:`edgevos.train.config.BaseTrainConfig` holds, plus ``--out``, ``--input-size``,
``--batch`` and ``--init``), adds each family's own options as an argument group named after
it, and for ``edgevos train FAMILY`` calls that family's ``config`` and then ``train``.
Importing this module does not import torch.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass(frozen=True)
class FamilyTraining:
    """How a family is trained from ``edgevos train`` arguments.

    Attributes:
        add_arguments: adds the family's own options to an argument group (names no other family uses).
        config: parsed arguments -> the family's TrainConfig, with the family's defaults where a
            shared option was not given (no torch).
        train: (that TrainConfig, parsed arguments) -> the path of the trained weights (loads torch).
        description: the argument group's text in ``edgevos train --help``: the family's defaults
            of the shared options and what it takes from ``--init``.
    """

    add_arguments: Callable[[Any], None]
    config: Callable[[argparse.Namespace], Any]
    train: Callable[[Any, argparse.Namespace], Path]
    description: str = ""
