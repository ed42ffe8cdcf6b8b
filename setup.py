"""One distribution installing hiopt_ros (online stack), sim and offline, as an ament_python package.

`colcon build` in a ROS 2 workspace installs the node executables into lib/hiopt_ros (setup.cfg),
launch/ and config/ (nav.yaml, theta/, policy/) into share/hiopt_ros, and the ament index marker,
so `ros2 launch hiopt_ros nav.launch.py` and `ros2 run hiopt_ros controller_node` work, and
hiopt_ros.config finds the installed config through the ament index. `colcon test` runs pytest
because the package declares it in the "test" extra (colcon ignores `tests_require`).
"""
import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "hiopt_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=["hiopt_ros", "hiopt_ros.*", "sim", "sim.*", "offline", "offline.*"]),
    package_data={"sim": ["urdf/*"], "offline.amod": ["data/*.json", "data/LICENSE", "data/README.md"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/config/theta", glob("config/theta/*.yaml")),
        (f"share/{PACKAGE}/config/dds", glob("config/dds/*.xml")),
        (f"share/{PACKAGE}/config/foxglove", glob("config/foxglove/*.json")),  # Foxglove layout
        (f"share/{PACKAGE}/config/rviz", glob("config/rviz/*.rviz")),  # RViz 2 config
        # shipped trained policy (TorchScript + its metadata), whatever files the folder holds
        (f"share/{PACKAGE}/config/policy", [p for p in glob("config/policy/*") if os.path.isfile(p)]),
    ],
    install_requires=["setuptools", "numpy", "pyyaml", "matplotlib"],
    zip_safe=True,
    maintainer="hiopt maintainers",
    maintainer_email="hiopt@example.com",
    description="Bi-level navigation: learned waypoint planner + inverse-optimized one-step FOP (acados), "
                "PyBullet simulator node, MPC expert",
    license="MIT",
    # colcon test runs pytest only when the package declares it here; pytest < 9 because launch_testing
    # 3.7 (Kilted) registers a hook pytest 9 rejects (PluginValidationError at start-up)
    extras_require={"test": ["pytest<9", "pytest-timeout"]},
    entry_points={
        "console_scripts": [
            "sim_node = sim.sim_node:main",
            "planner_node = hiopt_ros.nodes.planner_node:main",
            "controller_node = hiopt_ros.nodes.controller_node:main",
            "expert_node = hiopt_ros.nodes.expert_node:main",
            "e2e_node = hiopt_ros.nodes.e2e_node:main",
            "hiopt_launcher = hiopt_ros.launcher:main",
        ],
    },
)
