"""Independent CasADi + IPOPT formulations of the FOP (Eq. 32) and the MPC, for tests and benchmarks.

They are written from the equations, not from the acados models: the ReLU terms use an explicit
epigraph (s_k ≥ α_kᵀu − β_k, s_k ≥ 0) and the soft obstacle constraints of the MPC an explicit
slack, so agreement with the acados solvers checks the acados formulation (soft-constraint
trick, parameter layout) rather than repeating it.

Each solver can run the way a user who picked CasADi + IPOPT would run it in a loop:
* cold (`solve`): IPOPT's default initialisation from a fixed guess — for the FOP the acados
  FOP's starts (one per feasible speed slab, `Fop.start_actions`), for the MPC a standstill;
* warm (`solve_warm`): from the previous solution along a trajectory of instances, primal and
  dual (`warm_start_init_point`), shifted by one stage for the MPC; `reset()` between trajectories.
Both at tol 1e-8 (IPOPT's default acceptable-point rules).
"""
from __future__ import annotations

import time

import casadi as ca
import numpy as np

from .fop import Fop
from .model import casadi_step, pack_obstacles
from .mpc import Mpc

IPOPT_TOL = 1e-8
_IPOPT_OPTS = {"ipopt.print_level": 0, "print_time": 0, "ipopt.sb": "yes", "ipopt.tol": IPOPT_TOL,
               "ipopt.max_iter": 500}
# IPOPT's documented warm-start recipe: take the given primal-dual point, push it only a hair into
# the interior, and start the barrier parameter small (a large μ would undo the warm start)
_IPOPT_WARM_OPTS = {**_IPOPT_OPTS, "ipopt.warm_start_init_point": "yes", "ipopt.warm_start_bound_push": 1e-9,
                    "ipopt.warm_start_bound_frac": 1e-9, "ipopt.warm_start_slack_bound_push": 1e-9,
                    "ipopt.warm_start_slack_bound_frac": 1e-9, "ipopt.warm_start_mult_bound_push": 1e-9,
                    "ipopt.mu_init": 1e-4}


class _Nlp:
    """One CasADi NLP with a cold and a warm-start IPOPT instance."""

    def __init__(self, name: str, nlp: dict) -> None:
        self.cold = ca.nlpsol(f"{name}_cold", "ipopt", nlp, _IPOPT_OPTS)
        self.warm = ca.nlpsol(f"{name}_warm", "ipopt", nlp, _IPOPT_WARM_OPTS)

    @staticmethod
    def run(solver, **kw) -> tuple[dict, bool]:
        sol = solver(**kw)
        return {k: np.array(v).reshape(-1) for k, v in sol.items()}, bool(solver.stats()["success"])


class IpoptFop:
    """Eq. 32 for the same configuration as a given `Fop`, solved by IPOPT."""

    def __init__(self, fop: Fop) -> None:
        self.fop = fop
        cfg = fop.config
        K, M = cfg.K, cfg.M
        u = ca.SX.sym("u", 2)
        s = ca.SX.sym("s", K)
        # parameters: state(3) subgoal(2) yaw_ref c_p c_h c_u_total Ts alpha(2K) beta(K) obs(3M)
        p = ca.SX.sym("p", 10 + 3 * K + 3 * M)
        x0, goal, yaw_ref, c_p, c_h, c_u, ts = p[0:3], p[3:5], p[5], p[6], p[7], p[8], p[9]
        alpha = ca.reshape(p[10:10 + 2 * K], 2, K).T if K else ca.SX.zeros(0, 2)
        beta = p[10 + 2 * K:10 + 3 * K]
        obs = p[10 + 3 * K:]
        x1 = casadi_step(x0, u, ts)
        f = c_p * ca.sumsqr(x1[0:2] - goal) + c_h * (x1[2] - yaw_ref) ** 2 + c_u * ca.sumsqr(u) + ca.sum1(s)
        g = [s - (ca.mtimes(alpha, u) - beta)] if K else []
        g += [(x1[0] - obs[3 * j]) ** 2 + (x1[1] - obs[3 * j + 1]) ** 2 - obs[3 * j + 2] ** 2 for j in range(M)]
        self._ng = K + M
        self._nlp = _Nlp("fop_ipopt", {"x": ca.vertcat(u, s), "p": p, "f": f,
                                       "g": ca.vertcat(*g) if g else ca.SX.zeros(0)})
        self._prev: dict | None = None

    def reset(self) -> None:
        """Forget the previous solution (the next `solve_warm` starts cold)."""
        self._prev = None

    def solve(self, state, subgoal_xy, obstacles_xyr=None) -> tuple[np.ndarray, float]:
        """Cold: IPOPT from each of the acados FOP's starts, the feasible solution of lowest Eq. 32a
        cost. Returns (u, wall time in µs of the whole call)."""
        return self._solve(state, subgoal_xy, obstacles_xyr, warm=False)

    def solve_warm(self, state, subgoal_xy, obstacles_xyr=None) -> tuple[np.ndarray, float]:
        """Warm: like `solve`, but the start whose speed slab holds the previous solution (of the
        last `solve_warm`) is replaced by that primal-dual solution."""
        return self._solve(state, subgoal_xy, obstacles_xyr, warm=True)

    def _solve(self, state, subgoal_xy, obstacles_xyr, warm: bool) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        fop = self.fop
        state, subgoal_xy = np.asarray(state, float), np.asarray(subgoal_xy, float)
        kw = self._bounds_and_params(state, subgoal_xy, obstacles_xyr)
        starts = fop.start_actions(state, obstacles_xyr)
        warm_slot = -1
        if warm and self._prev is not None:
            rows = fop._obstacle_rows(state, obstacles_xyr)
            v_prev = float(self._prev["x"][0])
            slabs = fop.speed_slabs(state, rows) if fop.config.multi_start else [(-np.inf, np.inf)]
            for k, u0 in enumerate(starts):  # the start that shares a slab with the previous solution
                if any(a <= v_prev <= b and a <= u0[0] <= b for a, b in slabs):
                    warm_slot = k
                    break
        best, best_cost, best_sol = None, np.inf, None
        for k, u0 in enumerate(starts):
            if k == warm_slot:
                prev = self._prev
                sol, ok = _Nlp.run(self._nlp.warm, x0=prev["x"], lam_x0=prev["lam_x"], lam_g0=prev["lam_g"], **kw)
            else:
                alpha, beta = self._alpha_beta()
                x0 = np.concatenate([u0, np.maximum(alpha @ u0 - beta, 0.0)])
                sol, ok = _Nlp.run(self._nlp.cold, x0=x0, **kw)
            u = sol["x"][:2]
            cost = fop.objective(state, subgoal_xy, u)
            if ok and cost < best_cost:
                best, best_cost, best_sol = u, cost, sol
        if warm:
            self._prev = best_sol
        return (np.zeros(2) if best is None else best), (time.perf_counter() - t0) * 1e6

    def _alpha_beta(self) -> tuple[np.ndarray, np.ndarray]:
        cfg, theta = self.fop.config, self.fop.theta
        alpha, beta = np.zeros((cfg.K, 2)), np.ones(cfg.K)
        alpha[: theta.K], beta[: theta.K] = theta.alpha, theta.beta
        return alpha, beta

    def _bounds_and_params(self, state: np.ndarray, subgoal_xy: np.ndarray, obstacles_xyr) -> dict:
        fop, cfg = self.fop, self.fop.config
        park = np.zeros((cfg.M, 3))
        pack_obstacles(park, state, fop.effective_obstacles(state, obstacles_xyr).tolist())
        alpha, beta = self._alpha_beta()
        p = np.concatenate([state, subgoal_xy, [fop.yaw_reference(state, subgoal_xy), cfg.c_p, cfg.c_h,
                                                 cfg.c_u + fop.theta.l, cfg.Ts_s], alpha.reshape(-1), beta,
                            park.reshape(-1)])
        lim = cfg.limits
        return {"p": p, "lbx": np.concatenate([lim.lower, np.zeros(cfg.K)]),
                "ubx": np.concatenate([lim.upper, np.full(cfg.K, np.inf)]),
                "lbg": np.zeros(self._ng), "ubg": np.full(self._ng, np.inf)}

    def solve_from(self, state, subgoal_xy, obstacles_xyr, u0) -> tuple[np.ndarray, bool]:
        """IPOPT (cold options) from the initial guess u0; returns (u, IPOPT reported success)."""
        state, subgoal_xy, u0 = np.asarray(state, float), np.asarray(subgoal_xy, float), np.asarray(u0, float)
        alpha, beta = self._alpha_beta()
        sol, ok = _Nlp.run(self._nlp.cold, x0=np.concatenate([u0, np.maximum(alpha @ u0 - beta, 0.0)]),
                           **self._bounds_and_params(state, subgoal_xy, obstacles_xyr))
        return sol["x"][:2], ok


class IpoptMpc:
    """The MPC of `mpc.py` for the same configuration, solved by IPOPT (same soft obstacles, and the
    same target point as the acados MPC: `Mpc.target`, i.e. with its guidance)."""

    def __init__(self, mpc: Mpc) -> None:
        self.mpc = mpc
        cfg = mpc.config
        N, M = cfg.N, cfg.M
        X = ca.SX.sym("X", 3, N + 1)
        U = ca.SX.sym("U", 2, N)
        S = ca.SX.sym("S", M, N + 1)
        p = ca.SX.sym("p", 5 + 3 * M)
        x0, goal, obs = p[0:3], p[3:5], p[5:]
        # g = [x_0 − state; dynamics of stages 0..N−1 (equalities); obstacles of stages 0..N (≥ 0)]
        f = 0
        eq = [X[:, 0] - x0]
        ineq = []
        for i in range(N + 1):
            pos = X[0:2, i]
            if i < N:
                f += cfg.w_pos * ca.sumsqr(pos - goal) + cfg.w_v * U[0, i] ** 2 + cfg.w_omega * U[1, i] ** 2
                eq.append(X[:, i + 1] - casadi_step(X[:, i], U[:, i], cfg.Ts_s))
            else:
                f += cfg.w_terminal * ca.sumsqr(pos - goal)
            for j in range(M):
                f += cfg.obstacle_penalty_l1 * S[j, i] + cfg.obstacle_penalty_l2 * S[j, i] ** 2
                ineq.append((pos[0] - obs[3 * j]) ** 2 + (pos[1] - obs[3 * j + 1]) ** 2 - obs[3 * j + 2] ** 2
                            + S[j, i])
        g = eq + ineq
        self._f = ca.Function("mpc_cost", [ca.vertcat(ca.vec(X), ca.vec(U), ca.vec(S)), p], [f])
        self.last_cost = float("nan")
        self._n_eq = 3 * (N + 1)
        self._n_in = M * (N + 1)
        self._nlp = _Nlp("mpc_ipopt", {"x": ca.vertcat(ca.vec(X), ca.vec(U), ca.vec(S)), "p": p, "f": f,
                                       "g": ca.vertcat(*g)})
        self._shift_x, self._shift_g = self._shift_maps(N, M)
        self._prev: dict | None = None

    @staticmethod
    def _shift_maps(N: int, M: int) -> tuple[np.ndarray, np.ndarray]:
        """Index maps new ← old that shift a solution (x, λ_x) and the constraint multipliers λ_g
        one stage forward in time, repeating the last stage."""
        def stage(i: int) -> int:
            return min(i + 1, N)
        xs = [3 * stage(i) + r for i in range(N + 1) for r in range(3)]
        us = [3 * (N + 1) + 2 * min(i + 1, N - 1) + r for i in range(N) for r in range(2)]
        ss = [5 * N + 3 + M * stage(i) + r for i in range(N + 1) for r in range(M)]
        # g: [x_0 − state (3); dynamics 0..N−1 (3 each); obstacles 0..N (M each)]
        gmap = [3 + r for r in range(3)]  # the initial-state multipliers ← the old stage-0 costate
        gmap += [3 + 3 * min(i + 1, N - 1) + r for i in range(N) for r in range(3)]
        gmap += [3 + 3 * N + M * stage(i) + r for i in range(N + 1) for r in range(M)]
        return np.array(xs + us + ss), np.array(gmap)

    def reset(self) -> None:
        """Forget the previous solution (the next `solve_warm` starts cold)."""
        self._prev = None

    def plan_cost(self, state, goal_xy, obstacles_xyr, trajectory: np.ndarray, inputs: np.ndarray) -> float:
        """This NLP's objective at a given plan ((N+1, 3) states, (N, 2) inputs), each obstacle slack
        at its least value max(0, r² − ‖p − p_j‖²): how the acados plan scores on IPOPT's problem."""
        cfg = self.mpc.config
        kw = self._kw(np.asarray(state, float), goal_xy, obstacles_xyr)
        obs = kw["p"][5:].reshape(-1, 3)
        pos = np.asarray(trajectory, float)[:, :2]
        slack = np.maximum(0.0, obs[None, :, 2] ** 2 - ((pos[:, None, :] - obs[None, :, :2]) ** 2).sum(axis=2))
        w = np.concatenate([np.asarray(trajectory, float).reshape(-1), np.asarray(inputs, float).reshape(-1),
                            slack.reshape(-1)])
        assert slack.shape == (cfg.N + 1, cfg.M)
        return float(self._f(w, kw["p"]))

    def _kw(self, state: np.ndarray, goal_xy, obstacles_xyr) -> dict:
        cfg = self.mpc.config
        N, M = cfg.N, cfg.M
        park = np.zeros((M, 3))
        pack_obstacles(park, state, self.mpc.effective_obstacles(state, obstacles_xyr).tolist())
        p = np.concatenate([state, self.mpc.target(state, goal_xy, obstacles_xyr), park.reshape(-1)])
        nx = 3 * (N + 1)
        return {"p": p,
                "lbx": np.concatenate([np.full(nx, -np.inf), np.tile(cfg.limits.lower, N),
                                       np.zeros(M * (N + 1))]),
                "ubx": np.concatenate([np.full(nx, np.inf), np.tile(cfg.limits.upper, N),
                                       np.full(M * (N + 1), np.inf)]),
                "lbg": np.zeros(self._n_eq + self._n_in),
                "ubg": np.concatenate([np.zeros(self._n_eq), np.full(self._n_in, np.inf)])}

    def solve(self, state, goal_xy, obstacles_xyr=None) -> tuple[np.ndarray, float]:
        """Cold, from a standstill at `state`; returns (u, wall time in µs of the whole call)."""
        t0 = time.perf_counter()
        cfg = self.mpc.config
        state = np.asarray(state, float)
        x_init = np.concatenate([np.tile(state, cfg.N + 1), np.zeros(2 * cfg.N), np.zeros(cfg.M * (cfg.N + 1))])
        sol, _ = _Nlp.run(self._nlp.cold, x0=x_init, **self._kw(state, goal_xy, obstacles_xyr))
        self.last_cost = float(sol["f"][0])
        nx = 3 * (cfg.N + 1)
        return sol["x"][nx:nx + 2], (time.perf_counter() - t0) * 1e6

    def solve_warm(self, state, goal_xy, obstacles_xyr=None) -> tuple[np.ndarray, float]:
        """Warm, from the previous `solve_warm` solution shifted by one stage (primal and dual), its
        first state replaced by `state`; cold when there is none. Returns (u, µs)."""
        t0 = time.perf_counter()
        cfg = self.mpc.config
        state = np.asarray(state, float)
        kw = self._kw(state, goal_xy, obstacles_xyr)
        if self._prev is None:
            x_init = np.concatenate([np.tile(state, cfg.N + 1), np.zeros(2 * cfg.N), np.zeros(cfg.M * (cfg.N + 1))])
            sol, _ = _Nlp.run(self._nlp.cold, x0=x_init, **kw)
        else:
            prev = self._prev
            x_init = prev["x"][self._shift_x]
            x_init[0:3] = state
            sol, _ = _Nlp.run(self._nlp.warm, x0=x_init, lam_x0=prev["lam_x"][self._shift_x],
                              lam_g0=prev["lam_g"][self._shift_g], **kw)
        self._prev = sol
        self.last_cost = float(sol["f"][0])
        nx = 3 * (cfg.N + 1)
        return sol["x"][nx:nx + 2], (time.perf_counter() - t0) * 1e6
