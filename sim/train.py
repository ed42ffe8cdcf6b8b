"""Train the robot's upper level with RL: ``python -m sim.train --method {bilevel-unchanged,bilevel-learned,e2e}``.

Each method trains its policy for its own lower level (paper §4, Table 2):

* ``bilevel-unchanged``: subgoals for FOP with θ = 0 (Eq. 32 with the default weights of config/nav.yaml);
* ``bilevel-learned``: subgoals for FOP_θ with the θ file ``--theta`` (default config/theta/robot.yaml);
* ``e2e``: the end-to-end baseline, (v, ω) directly, no optimization layer.

The bi-level action (``--action``): ``residual`` (default) is a bounded body-frame correction of
the geometric look-ahead waypoint (residual policy learning: the policy starts as the prior and
learns what it gets wrong for its lower level); ``offset`` is the subgoal as a bounded offset from
the robot, learned from scratch.

The env is :class:`sim.nav_env.NavEnv` (kinematic backend by default; ``--backend pybullet``
with ``--init MODEL.zip`` fine-tunes in the physics). The harness is :mod:`sim.rl`
(stable-baselines3). Everything goes into ``--out`` (default ``runs/train/<method>-<time>/``):

    policy.pt            TorchScript policy in the layout planner_node / e2e_node load
    policy.yaml          provenance: the command, method, θ file + SHA-256, steps, seed, steps/s, commit
    model.zip            SB3 model (continue or fine-tune with --init)
    learning_curve.png   return and success/collision rates vs env steps (+ .csv)
    tb/                  TensorBoard logs        monitor/  per-episode CSVs        train.json

``--ship DEST.pt`` also copies policy.pt and policy.yaml to DEST.pt / DEST.yaml (e.g.
config/policy/bilevel_learned.pt). Courses come from the training seed range only (printed).

Continuing a model (``--init RUN/checkpoints/ppo_N_steps.zip`` or ``RUN/model.zip``): the steps
count on from the model's N, and policy.yaml records the earlier stage under ``continued_from``:
the model file, its N steps and the earlier run's ``run.yaml`` (its command and the θ file and
SHA-256 it trained for), so a policy continued on another θ says so instead of claiming one θ.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import yaml

from hiopt_ros.config import IMPORT_ROOT as REPO_ROOT  # noqa: E402  (the one config locator)
from hiopt_ros.config import config_path
from hiopt_ros.course import DEFAULT_PARAMS
from hiopt_ros.planning import observation as tp
from sim import rl
from sim.courses import TRAIN_SEEDS, describe_seed_ranges
from sim.nav_env import NavEnv, NavEnvConfig, RewardConfig, make_lower_level

METHODS = ("bilevel-unchanged", "bilevel-learned", "e2e")
DEFAULT_THETA = config_path("theta", "robot.yaml")


@dataclass
class TrainConfig:
    """The experiment: hyperparameters of the robot runs (sim.rl.RLConfig gets the SB3 ones)."""

    algo: str = "ppo"                # why PPO: README, "Training the upper level"
    steps: int = 600_000             # env steps (0.1 s planner periods)
    n_envs: int = 2                  # one worker per core of the 2-core machine
    seed: int = 0
    net_arch: tuple[int, ...] = (64, 64)
    n_steps: int = 1024              # PPO rollout per env (≈ 20 episodes) between updates
    batch_size: int = 256
    n_epochs: int = 10
    learning_rate: float = 3e-4
    gamma: float = 0.99
    ent_coef: float = 0.0
    log_std_init: float = -0.5       # offset and e2e actions; a residual starts nearer its prior:
    log_std_init_residual: float = -1.0


@dataclass(frozen=True)
class EnvFactory:
    """Picklable ``make_env(rank)``: builds the lower level and the env inside each worker process."""

    method: str
    theta: str | None
    backend: str
    params: str
    action: str = "offset"           # bi-level: NavEnvConfig.subgoal_action
    energy_per_j: float = 0.0        # RewardConfig.energy_per_j (--energy-weight)

    def lower_level_kind(self) -> str:
        return "none" if self.method == "e2e" else "fop"

    def __call__(self, rank: int = 0):
        lower = make_lower_level(self.lower_level_kind(), theta=self.theta, params=self.params)
        config = NavEnvConfig.from_params(self.params, subgoal_action=self.action,
                                          reward=RewardConfig(energy_per_j=self.energy_per_j))
        return NavEnv(lower, backend=self.backend, course_seeds=TRAIN_SEEDS, config=config, params=self.params)


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    d = TrainConfig()
    ap = argparse.ArgumentParser(prog="python -m sim.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", required=True, choices=METHODS, help="which policy to train (see above)")
    ap.add_argument("--theta", default=None,
                    help=f"θ file of the learned lower level (bilevel-learned only; default {DEFAULT_THETA})")
    ap.add_argument("--action", choices=("residual", "offset"), default=None,
                    help="bi-level action: residual = correction of the geometric look-ahead waypoint (default), "
                         "offset = subgoal offset from the robot (see above); not for e2e")
    ap.add_argument("--log-std-init", type=float, default=None,
                    help=f"PPO's initial log std of the Gaussian policy (default {d.log_std_init_residual} for "
                         f"--action residual, {d.log_std_init} otherwise)")
    ap.add_argument("--energy-weight", type=float, default=0.0, metavar="W",
                    help="subtract W × the wheel-motor work [J] of each step from the reward (sim.nav_env."
                         "RewardConfig.energy_per_j; an extension beyond the paper's reward, issue 21); "
                         "default 0: progress, time, collision and goal only")
    ap.add_argument("--steps", type=int, default=d.steps, help=f"env steps to train (default {d.steps})")
    ap.add_argument("--seed", type=int, default=d.seed, help="seed of the learner and the course draws (default 0)")
    ap.add_argument("--algo", choices=("ppo", "sac"), default=d.algo, help="SB3 algorithm (default ppo)")
    ap.add_argument("--n-envs", type=int, default=d.n_envs, help="parallel env workers (default 2)")
    ap.add_argument("--backend", choices=("kinematic", "pybullet"), default="kinematic",
                    help="env backend (default kinematic; pybullet for fine-tuning with --init)")
    ap.add_argument("--init", type=Path, default=None, help="SB3 model.zip to continue training from")
    ap.add_argument("--init-std", type=float, default=None,
                    help="with --init (PPO): reset the policy's Gaussian std to this (action units in [-1, 1]) "
                         "before continuing, e.g. 0.1 to train near the deterministic policy that is deployed")
    ap.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help="ROS parameter file (rates, bounds, FOP)")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default runs/train/<method>-<time>)")
    ap.add_argument("--ship", type=Path, default=None,
                    help="also copy the policy and its provenance to this .pt path "
                         "(e.g. config/policy/bilevel_learned.pt)")
    ap.add_argument("--vec", choices=("subproc", "dummy"), default="subproc",
                    help="subproc: one process per env (default); dummy: all in this process")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--export-only", action="store_true",
                    help="do not train: (re-)write policy.pt and policy.yaml from --out's model.zip (same other "
                         "arguments as the training run)")
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error(f"--steps must be >= 1, got {args.steps}")
    if args.n_envs < 1:
        ap.error(f"--n-envs must be >= 1, got {args.n_envs}")
    if not (0.0 <= args.energy_weight < 1e3):   # NaN fails too
        ap.error(f"--energy-weight must be a number in [0, 1000) per J, got {args.energy_weight}")
    if args.theta is not None and args.method != "bilevel-learned":
        ap.error(f"--theta is for --method bilevel-learned only ({args.method} uses "
                 f"{'θ = 0' if args.method == 'bilevel-unchanged' else 'no lower level'})")
    if args.method == "e2e" and args.action is not None:
        ap.error("--action is for the bi-level methods (e2e outputs (v, ω))")
    if args.method != "e2e" and args.action is None:
        args.action = "residual"
    if args.method == "bilevel-learned":
        args.theta = Path(args.theta) if args.theta is not None else DEFAULT_THETA
        if not args.theta.is_file():
            ap.error(f"--theta: {args.theta} does not exist (fit one with python -m offline.fit)")
    if not args.params.is_file():
        ap.error(f"--params: {args.params} does not exist")
    if args.export_only and args.out is None:
        ap.error("--export-only needs --out (the training run's folder)")
    if args.init is not None and not args.init.is_file():
        ap.error(f"--init: {args.init} does not exist")
    if args.init_std is not None and (args.init is None or args.algo != "ppo" or not 0 < args.init_std <= 1):
        ap.error(f"--init-std needs --init, --algo ppo and a value in (0, 1], got {args.init_std}")
    if args.ship is not None and args.ship.suffix != ".pt":
        ap.error(f"--ship must name a .pt file, got {args.ship}")
    return args


def _command(argv: list[str] | None, drop: tuple[str, ...] = ()) -> str:
    args = [a for a in (argv if argv is not None else sys.argv[1:]) if a not in drop]
    return "python -m sim.train " + " ".join(shlex.quote(a) for a in args)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    d = TrainConfig(algo=args.algo, steps=args.steps, n_envs=args.n_envs, seed=args.seed)
    out = args.out or REPO_ROOT / "runs" / "train" / f"{args.method}-{datetime.now():%Y%m%d-%H%M%S}"
    factory = EnvFactory(args.method, str(args.theta) if args.theta else None, args.backend, str(args.params),
                         action=args.action or "offset", energy_per_j=args.energy_weight)
    if args.export_only:
        return export_run(out, args, factory, _command(argv, drop=("--export-only",)))
    earlier = continued_from(args.init)
    if earlier is not None and isinstance(earlier.get("run"), dict) and args.method != "e2e":
        # runs from before --action existed trained the offset action
        earlier_action = earlier["run"].get("action") or "offset"
        if earlier_action != args.action:
            print(f"error: --init {args.init} was trained with --action {earlier_action}; continue it with "
                  f"--action {earlier_action}", file=sys.stderr)
            return 2
    print(f"sim.train: {args.method}, lower level: {_lower_text(args)}"
          f"{f', action {args.action}' if args.action else ''}; {args.algo.upper()} for {args.steps} "
          f"env steps, {args.n_envs} envs ({args.vec}), backend {args.backend}, seed {args.seed}"
          f"{f', reward − {args.energy_weight:g}/J of wheel-motor work' if args.energy_weight else ''}")
    print(describe_seed_ranges())
    print(f"output: {out}")

    probe = factory(0)
    env_sps = rl.measure_env_steps_per_s(probe, n_steps=min(300, args.steps), seed=args.seed)
    probe.close()
    print(f"env: {env_sps:.0f} steps/s with random actions (one process)")
    out.mkdir(parents=True, exist_ok=True)
    (out / "run.yaml").write_text(yaml.safe_dump({
        "command": _command(argv), "method": args.method, "action": args.action, **_theta_facts(args.theta),
        "init": str(args.init) if args.init else None, "reward_energy_per_j": args.energy_weight,
        "env_steps_per_s": round(env_sps, 1),
        "started_utc": _utc(), "git_commit": git_commit()}, sort_keys=False, allow_unicode=True))

    # a budget smaller than one rollout (tests) gets one short rollout instead of a full one
    n_steps = max(16, min(d.n_steps, -(-d.steps // d.n_envs)))
    cfg = rl.RLConfig(algo=d.algo, total_steps=d.steps, n_envs=d.n_envs, seed=d.seed, vec=args.vec,
                      net_arch=d.net_arch, learning_rate=d.learning_rate, gamma=d.gamma, n_steps=n_steps,
                      batch_size=min(d.batch_size, n_steps * d.n_envs), n_epochs=d.n_epochs, ent_coef=d.ent_coef,
                      log_std_init=(args.log_std_init if args.log_std_init is not None else
                                    d.log_std_init_residual if args.action == "residual" else d.log_std_init),
                      checkpoint_every=max(d.steps // 5, 10_000),
                      curve_keys=("reached", "collided"))
    progress = (not args.no_progress) and sys.stderr.isatty()
    # `kill PID` (SIGTERM; a background job ignores SIGINT) stops like Ctrl-C: the model is saved
    if threading.current_thread() is threading.main_thread():   # (a sweep task may run on another thread)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    import torch

    # one torch thread in this process (the cores go to the env workers): sim.rl sets it only when it
    # builds a new model, and with --init two MKL/OpenMP threads spin against each other on a busy machine
    # (measured: 13 env steps/s instead of ≈ 130 at load average 10)
    torch.set_num_threads(1)
    try:
        result = rl.train(factory, cfg, out, progress=progress, init_model=args.init, init_std=args.init_std)
    except KeyboardInterrupt:
        print(f"interrupted: the model so far is in {out / 'model.zip'} (export it with the same command "
              f"plus --export-only)", file=sys.stderr)
        return 130
    print(result.report())
    return export_run(out, args, factory, _command(argv), model=result.model)


def _lower_text(args) -> str:
    if args.method == "bilevel-learned":
        return f"FOP_θ with {_theta_facts(args.theta)['theta_file']}"
    return {"bilevel-unchanged": "FOP with θ = 0 (unchanged)", "e2e": "none (end-to-end)"}[args.method]


def _theta_facts(theta) -> dict:
    """The θ file a run trains for: repository-relative path and SHA-256 of the whole file."""
    if not theta:
        return {"theta_file": None, "theta_sha256": None}
    path = Path(theta).resolve()
    name = str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(theta)
    return {"theta_file": name, "theta_sha256": sha256(path)}


def _model_steps(zip_path: Path) -> int | None:
    """num_timesteps stored in an SB3 model zip (without building the model)."""
    import zipfile

    try:
        with zipfile.ZipFile(zip_path) as z:
            return int(json.loads(z.read("data"))["num_timesteps"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def continued_from(init: Path | None) -> dict | None:
    """What the --init model is: its file, SHA-256, env steps, and the run.yaml of the run that wrote
    it (RUN/model.zip or RUN/checkpoints/*.zip), which names that run's command and θ."""
    if init is None:
        return None
    init = Path(init)
    run_dir = init.parent.parent if init.parent.name == "checkpoints" else init.parent
    stage = {"model": str(init), "model_sha256": sha256(init), "env_steps": _model_steps(init)}
    run_yaml = run_dir / "run.yaml"
    if run_yaml.is_file():
        stage["run"] = yaml.safe_load(run_yaml.read_text())
        if stage["run"].get("init") and Path(stage["run"]["init"]).is_file():   # that run continued one too
            stage["continued_from"] = continued_from(Path(stage["run"]["init"]))
    else:
        stage["run"] = f"unknown: {run_yaml} does not exist (the θ and command of that stage are not recorded)"
    return stage


def _utc() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def export_run(out: Path, args, factory: EnvFactory, command: str, model=None) -> int:
    """Write out/policy.pt (TorchScript, the layout the nodes load) and out/policy.yaml (provenance)
    from the run's model (given, or out/model.zip with --export-only); --ship copies both."""
    if model is None:
        if not (out / "model.zip").is_file():
            print(f"error: --export-only: no {out / 'model.zip'} (train first)", file=sys.stderr)
            return 2
        model = rl.load_model(out / "model.zip", args.algo)
    run = yaml.safe_load((out / "run.yaml").read_text()) if (out / "run.yaml").is_file() else {}
    stats = json.loads((out / "train.json").read_text()) if (out / "train.json").is_file() else {}
    env = factory(0)
    scale, offset = env.action_scale
    n_obstacles, kind = env.config.n_obstacles, env.action_kind
    prior = {} if env.prior is None else {"prior_lookahead_m": float(env.prior.lookahead_m),
                                          "prior_clearance_m": float(env.prior.clearance_m)}
    env.close()
    stage = continued_from(args.init)
    # the θ this run trained for: as recorded when it started (the file may have changed since)
    theta = {k: run[k] for k in ("theta_file", "theta_sha256") if k in run} or _theta_facts(args.theta)
    if "theta_sha256" in run and args.theta and run["theta_sha256"] != sha256(args.theta):
        print(f"warning: {args.theta} changed since the run started; policy.yaml names the θ it trained for "
              f"(sha256 {run['theta_sha256'][:12]}…)", file=sys.stderr)
    policy = out / "policy.pt"
    rl.export_torchscript(model, policy, scale=scale, offset=offset, attributes={
        "n_obstacles": int(n_obstacles), "observation_version": tp.OBSERVATION_VERSION, "action_kind": kind,
        "method": args.method, **prior})
    provenance = {
        "tool": "sim.train",
        "command": run.get("command", command),
        "method": args.method,
        "action": args.action,
        "lower_level": _lower_text(args),
        **theta,
        "params_sha256": sha256(args.params),
        "algo": args.algo,
        "env_steps": stats.get("env_steps", int(model.num_timesteps) - (stage or {}).get("env_steps", 0)),  # this run
        "env_steps_total": int(model.num_timesteps),                     # incl. the --init model's
        "seed": args.seed,
        "backend": args.backend,
        "continued_from": stage,
        "init_std": args.init_std,
        "reward_energy_per_j": args.energy_weight,
        "course_seeds": f"{TRAIN_SEEDS.start}..{TRAIN_SEEDS.stop - 1}",
        "env_steps_per_s": run.get("env_steps_per_s"),
        "train_steps_per_s": round(stats["train_steps_per_s"], 1) if "train_steps_per_s" in stats else None,
        "wall_s": round(stats["wall_s"], 1) if "wall_s" in stats else None,
        "git_commit": git_commit(),
        "created_utc": _utc(),
        "action_kind": kind,
        **prior,
        "action_scale_m": [float(v) for v in scale] if kind != tp.ACTION_COMMAND else None,
        "n_obstacles": int(n_obstacles),
        "observation_version": tp.OBSERVATION_VERSION,
    }
    header = ("# Provenance of the TorchScript policy beside this file (written by python -m sim.train).\n"
              "# Regenerate it with the command below (from the repository root, PYTHONPATH=.)"
              + (";\n# it continued the model under continued_from: regenerate that stage first (its run's command)"
                 if args.init else "") + ".\n")
    (out / "policy.yaml").write_text(header + yaml.safe_dump(provenance, sort_keys=False, allow_unicode=True))
    print(f"wrote {policy} (+ policy.yaml), learning curve {out / 'learning_curve.png'}, "
          f"TensorBoard logs {out / 'tb'}")
    if args.ship is not None:
        args.ship.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(policy, args.ship)
        shutil.copyfile(out / "policy.yaml", args.ship.with_suffix(".yaml"))
        print(f"shipped {args.ship} (+ {args.ship.with_suffix('.yaml').name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
