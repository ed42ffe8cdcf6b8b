"""Experiment runner shared by the network case studies: ``python -m offline.experiments table1 --case amod``.

Table 1 of the paper compares, per case study, MPC (perfect knowledge, the upper bound),
Bi-level-unchanged, End-to-end RL and Bi-level-learned on the same seeded demand samples:
reward and served demand as mean ± std over episodes, and the decision time per step.
The runner owns everything that is the same for every case study (command line, seeds and their
disjointness from training, the episode loop with a progress bar, the results table, the plot,
the results folder); a case study only says how to prepare its policies and run one episode.

How a case study plugs in (the whole interface)
-----------------------------------------------
A module ``offline.<case>.table1`` defines ``CASE``, an object with

    name: str                       # "amod", "inventory" (the --case value)
    title: str                      # table title, e.g. "Table 1 (left): AMoD rebalancing"
    methods: tuple[str, ...]        # row order; the first one is the reference (MPC)
    optional_methods (optional)     # further rows run only when named in --methods (diagnostics)
    trained_methods (optional)      # the rows with an RL-trained policy (default: the paper's three
                                    # learned rows); they run once per training seed (--seeds)
    add_arguments(parser) -> None   # its own options (scenario, budgets, θ file, ...); they must
                                    # not clash with the runner's (--case --episodes --eval-seed
                                    # --methods --out --quiet)
    prepare(args, work_dir, log) -> Prepared
                                    # build / load / train whatever the methods need; cache
                                    # expensive artefacts (θ, trained policies) under work_dir
                                    # (args.work_dir, default results/<case>/) so a second run
                                    # reuses them; log(str) prints a progress line
    prepare(args, work_dir, log, train_seed=s) -> Prepared    (optional keyword, preferred)
                                    # the same for RL training seed s: cache the policies per seed
                                    # (e.g. rl/seed<s>/<method>/); a case without the keyword but with
                                    # an --rl-seed option gets args.rl_seed = s instead
    run_episode(prepared, method, seed) -> Episode
                                    # one evaluation episode of `method` on the demand sample
                                    # `seed` (the same seed gives every method the same sample)

and registers its module path in CASES below. The episodes are tasks of offline.sweep (``--workers N``
/ ``--address``): on Ray, ``Prepared`` is pickled to the workers (a state that cannot be pickled
makes the runner evaluate in process and say so). ``Prepared.train_seeds`` lists every environment
seed used for demonstrations or training; the runner refuses evaluation seeds that overlap it and
prints both ranges. ``Prepared.notes`` are lines for the table's notes (scenario, θ file, policy
checkpoints and their training budget).

Outputs (folder printed at the end): ``table1_<case>.md`` / ``.csv`` / ``_episodes.csv``
(sim.results.ResultsTable: reward, served demand, decision time per step as mean ± std over
episodes, and reward as a percentage of the reference's reward on the same seed), and
``table1_<case>.png`` (bars with std error bars, decision time on a log axis).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence

__all__ = ["Episode", "Prepared", "Table1Case", "CASES", "METHODS", "load_case"]

#: the method names of the paper's Table 1, in its row order (a case may run a subset)
METHODS = ("MPC", "Bi-level-unchanged", "End-to-end RL", "Bi-level-learned")

#: --case value -> module defining CASE (imported lazily: a case's dependencies load only when used)
CASES: dict[str, str] = {
    "amod": "offline.amod.table1",
    "inventory": "offline.inventory.table1",
}


@dataclass
class Episode:
    """One evaluation episode of one method.

    reward: the episode's total reward (the case study's own units, e.g. $).
    served_demand: served requests (AMoD: passengers; inventory: units sold) over the episode.
    decision_times_s: wall time of every decision step (s), policy + lower-level solve, env excluded.
    extra: further per-episode numbers (same keys for every episode of a method); they are added
        to the episodes CSV and the table as extra columns.
    """
    reward: float
    served_demand: float
    decision_times_s: Sequence[float]
    extra: Mapping[str, float] = field(default_factory=dict)


@dataclass
class Prepared:
    """What CASE.prepare returns: the case's own state plus what the runner reports."""
    state: Any
    train_seeds: Sequence[int] = ()
    notes: Sequence[str] = ()


class Table1Case(Protocol):
    name: str
    title: str
    methods: tuple[str, ...]

    def add_arguments(self, parser) -> None: ...

    def prepare(self, args, work_dir, log: Callable[[str], None]) -> Prepared: ...

    def run_episode(self, prepared: Prepared, method: str, seed: int) -> Episode: ...


def load_case(name: str) -> Table1Case:
    """The CASE object of a registered case study (ValueError naming the known ones otherwise)."""
    if name not in CASES:
        raise ValueError(f"unknown case study {name!r}; known: {', '.join(sorted(CASES))}")
    try:
        module = importlib.import_module(CASES[name])
    except ModuleNotFoundError as e:
        if e.name and CASES[name].startswith(e.name):
            raise ValueError(f"case study {name!r} is registered but {CASES[name]} does not exist yet") from None
        raise
    return module.CASE
