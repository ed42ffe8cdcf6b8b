"""The other two ways to design the lower level that the paper compares inverse optimization with (Table 4).

    cvx_fop     the cvxpy statement of a network FOP, built from its ReluLpFop (one statement of each FOP)
    layer_fit   Bi-level-cvxpy: θ by Adam through a cvxpylayers.torch.CvxpyLayer of that statement
    value       value approximation (Abdufattokhov et al. 2021): one-step problem + a learned convex
                quadratic V(s⁺), a QP on the shared LP/QP solver
    cases       what the baselines need of the AMoD and inventory case studies, from their public functions
    robot       the robot (beyond the paper): the cvxpy statement of the inverse fit's per-sample form
                (Eq. 32 convexified at the expert's state) and its cvxpylayers fit, Table 4 --case robot

Commands: `python -m offline.baselines {cvxpylayers,value} --case amod|inventory`, and
`python -m offline.experiments table4 --case amod|inventory` for the comparison.
"""
