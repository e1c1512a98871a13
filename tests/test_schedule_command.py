"""``ntk-l2 schedule``, ``ntk-l2 autol2 --schedule`` and ``ntk-l2 optimal-l2 --method gradient``
(`ntk_l2.experiments.law_schedule`, `derivations/optimize.md` G4–G5)."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from ntk_l2.cli import main
from ntk_l2.experiments.law_schedule import load_schedule
from ntk_l2.laws import L2Schedule

DATA = ["--dataset", "digits", "--n-train", 64, "--n-test", 64]
NET = ["--depth", 2, "--width", 64, "--parameterization", "standard"]


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    """One ``ntk-l2 schedule`` run (standard parameterization, η = 0.1, T = 120, 4 segments)."""
    out = tmp_path_factory.mktemp("schedule")
    argv = ["schedule", *DATA, *NET, "--lr", 0.1, "--steps", 120, "--segments", 4, "--init-samples", 2]
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        code = main([str(a) for a in [*argv, "--out", out]])
    assert code == 0
    _PRINTED[out] = printed.getvalue()
    return out


_PRINTED: dict = {}  # what each ``learned`` run printed


def test_schedule_command_writes_a_schedule_autol2_can_train_with(learned, tmp_path, capsys):
    """G5 end to end: schedule.json (read back, boundaries log-spaced), summary.json, the figure; then
    ``autol2 --schedule`` trains with it at its η, in theory and on finite networks, λ changing at
    exactly its boundaries."""
    schedule = load_schedule(learned / "schedule.json")
    assert schedule.boundaries == (15, 30, 60) and schedule.learning_rate == 0.1 and schedule.budget_step == 120
    summary = json.loads((learned / "summary.json").read_text())
    assert summary["kind"] == "schedule" and summary["learned"]["schedule"]["l2"] == list(schedule.l2)
    assert summary["learned"]["objective"] <= summary["learned"]["constant"]["objective"] + 1e-12
    assert (learned / "schedule.png").exists() and (learned / "schedule_data.json").exists()
    held, const = summary["learned"]["acc_at_budget_held_out"], summary["learned"]["constant_acc_at_budget_held_out"]
    assert 0 <= held <= 1 and 0 <= const <= 1  # on 2 draws other than the 2 learned on
    line = f"on 2 other NNGP draws (not those it was learned on): schedule {100 * held:.1f}%, constant λ_opt"
    assert line in _PRINTED[learned]
    for mode, extra in (("theory", ["--width", 64, "--init-samples", 2]), ("finite", ["--width", 64, "--seeds", 1])):
        out = tmp_path / mode
        argv = ["autol2", *DATA, "--depth", 2, "--parameterization", "standard", "--mode", mode, *extra]
        code, stdout, err = _run(
            [*argv, "--steps", 80, "--constant-l2", "1e-3,1e-1", "--schedule", learned / "schedule.json", "--out", out],
            capsys,
        )
        assert code == 0, err
        s = json.loads((out / "summary.json").read_text())
        assert L2Schedule.from_json(s["schedule"]) == schedule and s["lr"] == 0.1
        assert sorted({c[0] for c in s["autol2_changes"]}) == [15, 30, 60] and "λ schedule:" in stdout
        data = json.loads((out / "autol2_data.json").read_text())["data"]["autol2"]
        steps, l2 = np.asarray(data["steps"]), np.asarray(data["l2"])
        # finite networks hold λ in their parameters' dtype (float32): equal to 1e-6; the theory exactly
        rtol = 1e-6 if mode == "finite" else 0.0
        np.testing.assert_allclose(l2, [schedule.value(int(t)) for t in steps], rtol=rtol, atol=0)


def test_replot_redraws_a_schedule_directory(learned, capsys):
    code, stdout, err = _run(["plot", learned], capsys)
    assert code == 0, err
    assert "schedule.png" in stdout


def test_optimal_l2_by_gradient(tmp_path, capsys):
    """G4 through the command: the kernel's λ_opt is the gradient's, with its path and time."""
    argv = ["optimal-l2", *DATA, *NET, "--lr", 0.02, "--budget-step", 150, "--probe-l2", 0.05]
    code, stdout, err = _run([*argv, "--grid", "1e-3,1e-2,1e-1", "--method", "gradient", "--out", tmp_path], capsys)
    assert code == 0, err
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["method"] == "gradient" and s["l2_opt_kernel"] == s["gradient"]["l2_opt"]
    assert len(s["gradient"]["path"]) > s["gradient"]["starts"] and "(gradient," in stdout


@pytest.mark.parametrize(
    "argv,message",
    [
        (["autol2", "--steps", 10, "--schedule", "missing.json", "--out", "x"], "schedule: missing.json is not a file"),
        (["autol2", "--steps", 10, "--schedule", "bad.json", "--out", "x"], "not an ntk_l2 λ schedule"),
        (
            ["autol2", "--steps", 10, "--schedule", "typed.json", "--out", "x"],
            "error: schedule: typed.json.l2[0]: expected",
        ),
        (["autol2", "--steps", 10, "--schedule", "good.json", "--lr", 1, "--out", "x"], "learned for η = 0.02"),
        (["schedule", "--steps", 10, "--l2-min", 1, "--l2-max", 0.1, "--out", "x"], "--l2-min: must be below"),
        (["schedule", "--steps", 1, "--out", "x"], "--steps: the budget T must be at least 2"),
        (["schedule", "--steps", 10, "--l2-max", 5, "--out", "x"], "--l2-max: η·λ must stay below 1"),
        (["schedule", "--steps", 10, "--checkpoints", "5,10", "--out", "x"], "--checkpoints: must be steps before"),
        (["schedule", "--steps", 10, "--surrogate", "hinge", "--out", "x"], "--surrogate: invalid choice"),
        (["optimal-l2", "--budget-step", 10, "--method", "newton", "--out", "x"], "--method: invalid choice"),
    ],
)
def test_bad_schedule_inputs_are_one_line(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.json").write_text(json.dumps({"kind": "sweep"}))
    typed = {**L2Schedule(0.02, (5,), (0.1, 0.01), 10).to_file_json(), "l2": ["a", 0.01]}
    (tmp_path / "typed.json").write_text(json.dumps(typed))
    good = L2Schedule(0.02, (5,), (0.1, 0.01), 10)
    (tmp_path / "good.json").write_text(json.dumps(good.to_file_json()))
    code, _, err = _run([*argv[:1], *DATA, *argv[1:]], capsys)
    assert code == 2 and err.startswith("ntk-l2: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()
