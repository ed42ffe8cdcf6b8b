"""ROS-free lower level: unicycle model, FOP (Eq. 32), MPC expert, acados loading, θ files."""
