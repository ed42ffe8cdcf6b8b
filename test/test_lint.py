"""The whole tree passes ruff (E, W, F, I; 120 columns) with the repository's ruff.toml."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_check_is_clean():
    config = ROOT / "ruff.toml"
    assert config.is_file(), f"{config} is missing"
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--config", str(config), "--no-cache", str(ROOT)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (f"ruff check found problems (fix them, or `ruff check --fix .` for imports):\n"
                                  f"{proc.stdout}{proc.stderr}")
    assert "All checks passed" in proc.stdout, proc.stdout + proc.stderr
