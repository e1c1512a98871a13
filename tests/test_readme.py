"""The README's API tour runs as written, and .ci/run calls the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_api_tour_runs(capsys):
    """Every python block of the README, in order, in one namespace."""
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert len(blocks) >= 2
    namespace: dict = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"README.md[python block {i}]", "exec"), namespace)
    assert namespace["fx_test"].shape == (50, 512, 10)
    assert namespace["gaussian"].covariance.shape == (50, 512, 512)
    result = namespace["result"]
    assert result.fx_test.shape[:2] == (3, len(result.steps)) and not result.diverged.any()
    assert result.ntk_probe.shape[:2] == (3, 2)
    assert namespace["fx_test_hb"].shape == (21, 512, 10)
    assert namespace["moments"].mean_train.shape == (11, 32, 10) and namespace["moments"].loss.shape == (11,)
    assert namespace["losses"].shape == (64,) and np.all(np.isfinite(namespace["losses"]))
    assert np.isfinite(float(namespace["slope"]))
    # the laws' block: the kernel theory predicts the width-128 networks' t* within 10% and their
    # best accuracy within 5 points at λ = 0.01 (measured: 1645 vs 1645 steps, 86.3% vs 84.7%)
    theory, network = namespace["law_runs"]["theory"][0], namespace["law_runs"]["network"][0]
    assert abs(theory.t_star / network.t_star - 1) < 0.1 and abs(theory.max_test_acc - network.max_test_acc) < 0.05
    assert namespace["best"].l2_opt > 0 and all(c[1] in (0, 1) for c in namespace["auto"].changes)


def test_ci_runs_the_readme_test_command_verbatim():
    commands = re.findall(r"```bash\n(.*?)```", README, re.S)[0].splitlines()
    test_command = [c for c in commands if "pytest" in c and not c.startswith("#")][0].strip()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in [line.strip() for line in ci]
