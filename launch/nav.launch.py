"""Start the hiopt navigation stack: sim_node + planner_node + controller_node (or sim_node + expert_node).

    ros2 launch hiopt_ros nav.launch.py [params_file:=...] [theta_file:=...] [use_expert:=true]
                                        [e2e_policy:=...] [gui:=true] [use_sim_time:=true]

The node graph (which nodes, which parameter overrides) comes from hiopt_ros.bringup, the same
module the pip-only launcher (`python -m hiopt_ros.launcher`) uses, so both start the same thing.
The nodes are lifecycle nodes that activate themselves (their `autostart` parameter defaults to
true); `ros2 lifecycle get /controller_node` shows their state. The per-node override files live
in a temporary folder that is deleted when the launch shuts down.
"""
import shutil
import tempfile

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnShutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from hiopt_ros import bringup


def _truthy(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def _nodes(context, *args, **kwargs):
    params_file = LaunchConfiguration("params_file").perform(context)
    specs = bringup.graph(
        params_file,
        theta_file=LaunchConfiguration("theta_file").perform(context),
        use_expert=_truthy(LaunchConfiguration("use_expert").perform(context)),
        gui=_truthy(LaunchConfiguration("gui").perform(context)),
        use_sim_time=_truthy(LaunchConfiguration("use_sim_time").perform(context)),
        e2e_policy=LaunchConfiguration("e2e_policy").perform(context),
    )
    # overrides go in a file keyed by the node's name (bringup.write_overrides), exactly as the pip-only
    # launcher passes them: a dict (or -p) would land under /** and lose to the node's own section
    overrides_dir = tempfile.mkdtemp(prefix="hiopt_launch_params_")
    nodes = [
        Node(package=bringup.PACKAGE, executable=spec.executable, name=spec.name, output="screen",
             emulate_tty=True, parameters=[params_file, str(bringup.write_overrides(spec, overrides_dir))],
             remappings=list(spec.remappings))
        for spec in specs
    ]
    cleanup = RegisterEventHandler(OnShutdown(
        on_shutdown=lambda event, ctx: shutil.rmtree(overrides_dir, ignore_errors=True)))
    return [cleanup, *nodes]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=str(bringup.default_params_file()),
                              description="ROS 2 parameter file of every node (config/nav.yaml)"),
        DeclareLaunchArgument("theta_file", default_value="",
                              description="fitted θ (config/theta/*.yaml) for the FOP; empty: unchanged FOP"),
        DeclareLaunchArgument("use_expert", default_value="false",
                              description="drive with the MPC expert instead of planner + controller"),
        DeclareLaunchArgument("e2e_policy", default_value="",
                              description="end-to-end RL policy (.pt): e2e_node drives instead of "
                                          "planner + controller"),
        DeclareLaunchArgument("gui", default_value="false", description="open the PyBullet GUI"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="sim_node publishes /clock and the other nodes follow it"),
        OpaqueFunction(function=_nodes),
    ])
