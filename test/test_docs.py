"""The documentation: README.md as the entry point, the MkDocs site under docs/ built with --strict.

A strict build fails on a broken link, a page missing from the nav (or a nav entry without its
page) and a missing include (pymdownx.snippets with check_paths), so building it here is the check;
the two negative tests show that the build really fails on those.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mkdocs", reason="mkdocs is not installed in this Python (tools/requirements.in lists it)")
pytest.importorskip("material", reason="mkdocs-material is not installed in this Python")

README_MAX_LINES = 200


def build(root: Path, site: Path) -> subprocess.CompletedProcess:
    # run where mkdocs.yml is: the snippets' base_path (docs/, .) is relative to it
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=root, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def copy_sources(repo_root: Path, dest: Path) -> Path:
    shutil.copytree(repo_root / "docs", dest / "docs")
    for name in ("mkdocs.yml", "README.md"):
        shutil.copy2(repo_root / name, dest / name)
    return dest


def test_site_builds_strict_with_every_page_and_include(repo_root, tmp_path):
    result = build(repo_root, tmp_path / "site")
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    pages = sorted(p.name for p in (repo_root / "docs").glob("*.md"))
    for required in ("index.md", "ros-stack.md", "lower-level.md", "offline-fit.md", "robot-rl.md", "amod.md",
                     "inventory.md", "experiments.md", "dependencies.md", "faults-and-soak.md", "testing.md",
                     "development.md"):
        assert required in pages
    for page in pages:
        html = tmp_path / "site" / ("index.html" if page == "index.md" else f"{page[:-3]}/index.html")
        text = html.read_text()
        assert "--8<--" not in text, f"{page}: an include was not expanded"
    # the includes really bring the tables in: Table 2's rows and the README's topic table
    experiments = (tmp_path / "site" / "experiments" / "index.html").read_text()
    assert experiments.count("Bi-level-learned") >= 4
    ros_stack = (tmp_path / "site" / "ros-stack" / "index.html").read_text()
    assert "/hiopt/solve_time_us" in ros_stack and "/goal_pose" in ros_stack


@pytest.mark.parametrize("breakage", ["broken link", "missing include", "page not in nav"])
def test_strict_build_fails_on_what_it_must_refuse(repo_root, tmp_path, breakage):
    root = copy_sources(repo_root, tmp_path / "src")
    page = root / "docs" / "testing.md"
    if breakage == "broken link":
        page.write_text(page.read_text() + "\nSee [nowhere](no-such-page.md).\n")
    elif breakage == "missing include":
        page.write_text(page.read_text() + '\n--8<-- "results/no_such_table.md"\n')
    else:
        (root / "docs" / "orphan.md").write_text("# Orphan\n")
    result = build(root, tmp_path / "site")
    assert result.returncode != 0, f"a {breakage} passed mkdocs build --strict:\n{result.stderr}"


def test_readme_is_short_and_names_the_two_commands_ci_runs(repo_root):
    readme = (repo_root / "README.md").read_text()
    assert len(readme.splitlines()) <= README_MAX_LINES
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    commands = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    assert "make nav" in commands and "make test" in commands
    ci = [line.strip() for line in (repo_root / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    assert "make test" in ci, f".ci/run does not call the README's test command: {ci}"
    makefile = (repo_root / "Makefile").read_text()
    assert re.search(r"^test:", makefile, re.M) and re.search(r"^nav:", makefile, re.M)


def test_readme_topic_table_names_only_topics_the_nodes_use(repo_root):
    """Every topic row of the README's table is a topic some node or the recorder names in its code (the
    online stack, hiopt_ros/, and the sim bridge, sim/sim_node.py)."""
    readme = (repo_root / "README.md").read_text()
    section = readme.split("[start:topics]")[1].split("[end:topics]")[0]
    topics = re.findall(r"^\| `(/[a-z_/]+)`", section, re.M)
    assert "/goal_pose" in topics and "/cmd_vel" in topics
    files = [*(repo_root / "hiopt_ros").rglob("*.py"), repo_root / "sim" / "sim_node.py"]
    code = "".join(p.read_text() for p in files)
    for topic in topics:
        assert f'"{topic}"' in code, f"README topic {topic} is not named in hiopt_ros/ or sim/sim_node.py"


def test_every_included_file_is_one_git_keeps(repo_root):
    """An include that .gitignore swallows builds here and fails on a fresh clone (it happened:
    docs/results/ matched the `results/` pattern until a01a286)."""
    if shutil.which("git") is None or not (repo_root / ".git").exists():
        pytest.skip("not a git checkout")
    includes = set()
    for page in (repo_root / "docs").rglob("*.md"):
        for target in re.findall(r'--8<-- "([^":<]+)(?::[^"]*)?"', page.read_text()):  # not `<name>` examples
            path = repo_root / "docs" / target if (repo_root / "docs" / target).exists() else repo_root / target
            includes.add(str(path.relative_to(repo_root)))
    assert "docs/results/table2.md" in includes and "README.md" in includes
    ignored = subprocess.run(["git", "check-ignore", *sorted(includes)], cwd=repo_root, capture_output=True,
                             text=True).stdout.split()
    assert not ignored, f"included by the docs but ignored by git (a fresh clone lacks them): {ignored}"
