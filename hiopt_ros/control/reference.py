"""Independent CasADi + IPOPT formulations of the FOP (Eq. 32) and the MPC, for tests and benchmarks.

They are written from the equations, not from the acados models: the ReLU terms use an explicit
epigraph (s_k ≥ α_kᵀu − β_k, s_k ≥ 0) and the soft obstacle constraints of the MPC an explicit
slack, so agreement with the acados solvers checks the acados formulation (soft-constraint
trick, parameter layout) rather than repeating it.
"""
from __future__ import annotations

import time

import casadi as ca
import numpy as np

from .fop import Fop
from .model import casadi_step, pack_obstacles
from .mpc import Mpc

_IPOPT_OPTS = {"ipopt.print_level": 0, "print_time": 0, "ipopt.sb": "yes", "ipopt.tol": 1e-10,
               "ipopt.acceptable_tol": 1e-10, "ipopt.max_iter": 500}


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
        self._solver = ca.nlpsol("fop_ipopt", "ipopt", {"x": ca.vertcat(u, s), "p": p, "f": f,
                                                         "g": ca.vertcat(*g) if g else ca.SX.zeros(0)},
                                 _IPOPT_OPTS)

    def solve(self, state, subgoal_xy, obstacles_xyr=None) -> tuple[np.ndarray, float]:
        """Return (u, wall time in µs of the whole call): IPOPT from each of the acados FOP's starts
        (one per feasible speed slab, `Fop.start_actions`), the feasible solution of lowest cost."""
        t0 = time.perf_counter()
        best, best_cost = None, np.inf
        for u0 in self.fop.start_actions(state, obstacles_xyr):
            u, ok = self.solve_from(state, subgoal_xy, obstacles_xyr, u0)
            cost = self.fop.objective(state, subgoal_xy, u)
            if ok and cost < best_cost:
                best, best_cost = u, cost
        if best is None:
            best = np.zeros(2)
        return best, (time.perf_counter() - t0) * 1e6

    def solve_from(self, state, subgoal_xy, obstacles_xyr, u0) -> tuple[np.ndarray, bool]:
        """IPOPT from the initial guess u0; returns (u, IPOPT reported success)."""
        fop, cfg = self.fop, self.fop.config
        state, subgoal_xy = np.asarray(state, float), np.asarray(subgoal_xy, float)
        park = np.zeros((cfg.M, 3))
        pack_obstacles(park, state, fop.effective_obstacles(state, obstacles_xyr).tolist())
        theta = fop.theta
        alpha = np.zeros((cfg.K, 2))
        beta = np.ones(cfg.K)
        alpha[: theta.K], beta[: theta.K] = theta.alpha, theta.beta
        p = np.concatenate([state, subgoal_xy, [fop.yaw_reference(state, subgoal_xy), cfg.c_p, cfg.c_h,
                                                 cfg.c_u + theta.l, cfg.Ts_s], alpha.reshape(-1), beta,
                            park.reshape(-1)])
        lim = cfg.limits
        lbx = np.concatenate([lim.lower, np.zeros(cfg.K)])
        ubx = np.concatenate([lim.upper, np.full(cfg.K, np.inf)])
        lbg = np.zeros(self._ng)
        ubg = np.full(self._ng, np.inf)
        u0 = np.asarray(u0, float)
        x0 = np.concatenate([u0, np.maximum(alpha @ u0 - beta, 0.0)])
        sol = self._solver(x0=x0, p=p, lbx=lbx, ubx=ubx, lbg=lbg, ubg=ubg)
        u = np.array(sol["x"]).reshape(-1)[:2]
        return u, bool(self._solver.stats()["success"])


class IpoptMpc:
    """The MPC of `mpc.py` for the same configuration, solved by IPOPT (same soft obstacles)."""

    def __init__(self, mpc: Mpc) -> None:
        self.mpc = mpc
        cfg = mpc.config
        N, M = cfg.N, cfg.M
        X = ca.SX.sym("X", 3, N + 1)
        U = ca.SX.sym("U", 2, N)
        S = ca.SX.sym("S", M, N + 1)
        p = ca.SX.sym("p", 5 + 3 * M)
        x0, goal, obs = p[0:3], p[3:5], p[5:]
        f = 0
        g = [X[:, 0] - x0]
        for i in range(N + 1):
            pos = X[0:2, i]
            if i < N:
                f += cfg.w_pos * ca.sumsqr(pos - goal) + cfg.w_v * U[0, i] ** 2 + cfg.w_omega * U[1, i] ** 2
                g.append(X[:, i + 1] - casadi_step(X[:, i], U[:, i], cfg.Ts_s))
            else:
                f += cfg.w_terminal * ca.sumsqr(pos - goal)
            for j in range(M):
                f += cfg.obstacle_penalty_l1 * S[j, i] + cfg.obstacle_penalty_l2 * S[j, i] ** 2
                g.append((pos[0] - obs[3 * j]) ** 2 + (pos[1] - obs[3 * j + 1]) ** 2 - obs[3 * j + 2] ** 2 + S[j, i])
        self._n_eq = 3 * (N + 1)
        self._n_in = M * (N + 1)
        self._solver = ca.nlpsol("mpc_ipopt", "ipopt", {"x": ca.vertcat(ca.vec(X), ca.vec(U), ca.vec(S)), "p": p,
                                                         "f": f, "g": ca.vertcat(*g)}, _IPOPT_OPTS)

    def solve(self, state, goal_xy, obstacles_xyr=None) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        cfg = self.mpc.config
        N, M = cfg.N, cfg.M
        state = np.asarray(state, float)
        park = np.zeros((M, 3))
        pack_obstacles(park, state, self.mpc.effective_obstacles(state, obstacles_xyr).tolist())
        p = np.concatenate([state, np.asarray(goal_xy, float), park.reshape(-1)])
        nx = 3 * (N + 1)
        lbx = np.concatenate([np.full(nx, -np.inf), np.tile(cfg.limits.lower, N), np.zeros(M * (N + 1))])
        ubx = np.concatenate([np.full(nx, np.inf), np.tile(cfg.limits.upper, N), np.full(M * (N + 1), np.inf)])
        x_init = np.concatenate([np.tile(state, N + 1), np.zeros(2 * N), np.zeros(M * (N + 1))])
        lbg = np.zeros(self._n_eq + self._n_in)
        ubg = np.concatenate([np.zeros(self._n_eq), np.full(self._n_in, np.inf)])
        sol = self._solver(x0=x_init, p=p, lbx=lbx, ubx=ubx, lbg=lbg, ubg=ubg)
        w = np.array(sol["x"]).reshape(-1)
        return w[nx:nx + 2], (time.perf_counter() - t0) * 1e6

