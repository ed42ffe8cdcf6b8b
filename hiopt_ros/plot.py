"""Top-down figure of the course (obstacles, start, goal) with robot trajectories and subgoals."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: figures are files, never windows
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Circle

from hiopt_ros.course import Course


def plot_trajectory(path_png: str | Path, course: Course, trajectories: dict[str, np.ndarray],
                    subgoals: np.ndarray | None = None, title: str = "") -> Path:
    """Draw the course and each trajectory's path into a PNG; returns the written path.

    Args:
        path_png: output file (parent folders are created).
        course: obstacles are drawn filled, with a dashed circle at r + robot_radius_m (the set the
            robot's centre must stay out of); start is a triangle pointing along the start heading,
            the goal a star inside its tolerance circle.
        trajectories: {label: (T, >=2) array}; columns 0, 1 are x_m, y_m (further columns ignored).
        subgoals: optional (S, >=2) array of subgoal positions [x_m, y_m], drawn as small crosses.
        title: figure title.
    """
    path_png = Path(path_png)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    for i, (x, y, r) in enumerate(course.obstacles_xyr):
        ax.add_patch(Circle((x, y), r, facecolor="0.45", edgecolor="0.2", zorder=2,
                            label="obstacle" if i == 0 else None))
        ax.add_patch(Circle((x, y), r + course.robot_radius_m, fill=False, linestyle="--",
                            edgecolor="0.45", linewidth=1.0, zorder=2,
                            label="obstacle + robot radius" if i == 0 else None))
    sx, sy, syaw = course.start_xyyaw
    ax.plot(sx, sy, marker=(3, 0, np.degrees(syaw) - 90.0), markersize=12, color="tab:green",
            linestyle="none", zorder=5, label="start")
    gx, gy = course.goal_xy
    ax.add_patch(Circle((gx, gy), course.goal_tolerance_m, fill=False, edgecolor="tab:red",
                        linewidth=1.0, zorder=4))
    ax.plot(gx, gy, marker="*", markersize=14, color="tab:red", linestyle="none", zorder=5,
            label="goal")

    for label, traj in trajectories.items():
        traj = np.asarray(traj, dtype=float)
        if traj.ndim != 2 or traj.shape[1] < 2:
            raise ValueError(f"trajectory {label!r} must be a (T, >=2) array, got shape {traj.shape}")
        ax.plot(traj[:, 0], traj[:, 1], linewidth=1.8, zorder=3, label=label)
    if subgoals is not None and len(subgoals):
        sg = np.asarray(subgoals, dtype=float).reshape(len(subgoals), -1)
        ax.plot(sg[:, 0], sg[:, 1], "x", color="tab:purple", markersize=5, alpha=0.7, zorder=4,
                label="subgoals")

    ax.set_aspect("equal")
    ax.autoscale_view()
    ax.margins(0.08)
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.grid(True, linewidth=0.4, alpha=0.5)
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    path_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path_png, bbox_inches="tight")
    plt.close(fig)
    return path_png
