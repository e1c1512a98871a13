"""Finite-width training with L2 in JAX, in the conventions of the theory.

Gradient descent on L(θ) + (λ/2)‖θ‖², L = ‖f_X − Y‖²/(2N), N = Y.size, with
g_s = ∇L(θ_s) + λ_s θ_s and v_0 = 0 (`derivations/discrete_time.md`, D1;
`derivations/momentum.md`, M1)::

    θ_{s+1} = (1 − η_s λ_s) θ_s − η_s ∇L(θ_s)                          (plain)
    v_{s+1} = β v_s + g_s,  θ_{s+1} = θ_s − η_s v_{s+1}                 (heavy ball β)
    v_{s+1} = β v_s + g_s,  θ_{s+1} = θ_s − η_s (g_s + β v_{s+1})       (Nesterov β, the optax/PyTorch form)

Minibatch SGD uses L on a batch (N = batch size × c). L2 acts on every
trainable parameter. An ensemble of seeds runs vmapped in one compiled
program; steps between records run inside `jax.lax.fori_loop`.

`train` puts together pieces that are each usable and tested alone: the update rules
(`ntk_l2.finite.rules`: the rules above, or any optax transformation), the compiled loop
(`ntk_l2.finite.loop`), the recorder (`ntk_l2.finite.recorder`: records, divergence, probe
NTK) and checkpoints (`ntk_l2.finite.checkpoint`: a killed run resumes where it stopped).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import enable_x64

from ntk_l2.common.io import check_output
from ntk_l2.finite.checkpoint import CheckpointWarning, fingerprint, load_checkpoint, save_checkpoint
from ntk_l2.finite.config import Array, ScheduleFn, TrainConfig, TrainResult, log_steps
from ntk_l2.finite.loop import Carry, data_loss_grad, make_advance, make_step
from ntk_l2.finite.recorder import Recorder, layer_norms, make_ntk_fn, make_observer, probe_ntk
from ntk_l2.finite.rules import UpdateRule, check_rule, l2_rule, set_l2

__all__ = [
    "Array",
    "CheckpointWarning",
    "ScheduleFn",
    "TrainConfig",
    "TrainResult",
    "layer_norms",
    "linearize",
    "log_steps",
    "train",
]

Controller = Callable[[int, dict[str, np.ndarray]], Any]


def linearize(apply_fn: Callable[..., Any]) -> Callable[..., Any]:
    """f_lin(θ, x; θ_0) = f(θ_0, x) + J(θ_0, x)(θ − θ_0), the network linearized at θ_0.

    Returns ``apply_lin(params, x, params0)``; like `nt.linearize` but with θ_0 an
    argument so an ensemble of initializations can be vmapped. Trained with L2 it is
    exactly the degree-1 discrete map with the empirical NTK and offset f_0 − J_0θ_0
    (`derivations/finite_width.md`, F1).
    """

    def apply_lin(params: Any, x: Any, params0: Any) -> Any:
        delta = jax.tree_util.tree_map(lambda p, p0: p - p0, params, params0)
        f0, df = jax.jvp(lambda p: apply_fn(p, x), (params0,), (delta,))
        return f0 + df

    return apply_lin


def train(
    init_fn: Callable[..., Any],
    apply_fn: Callable[..., Any],
    x_train: Array,
    y_train: Array,
    config: TrainConfig,
    *,
    x_test: Array | None = None,
    labels_train: Array | None = None,
    labels_test: Array | None = None,
    seeds: Sequence[int] = (0,),
    linearized: bool = False,
    progress: bool | None = None,
    label: str | None = None,
    l2_controller: Controller | None = None,
    rule: Any = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
) -> TrainResult:
    """Train an ensemble of networks (one per seed, vmapped) and record the run.

    Args:
      init_fn, apply_fn: a stax pair (or any pair with that interface).
      x_train, y_train: training inputs and (n, c) targets.
      config: a `TrainConfig`.
      x_test: optional test inputs (recorded outputs ``fx_test``).
      labels_train, labels_test: integer labels for accuracies (optional).
      seeds: one network per seed, trained together with `jax.vmap` (with a
        λ grid in ``config.l2``: one per (λ, seed) pair, all in one program).
      linearized: train the network linearized at its initialization instead
        (`linearize`), the linear-model baseline.
      progress: show a tqdm bar (default: when the run has > 2,000 steps); it names what runs
        (``label``, e.g. "width 512", then λ, η and the seeds) and moves in steps of ~1% of the run.
      l2_controller: a dynamical λ (e.g. AutoL2, `ntk_l2.laws.autol2` on `ntk_l2.laws.FiniteDynamics`): called at
        every record step s as ``l2_controller(s, row)`` with ``row`` holding that
        record's ``fx_train``, ``loss_data`` and ``l2`` (per member); it returns the new
        λ per member for the steps that follow, or None to keep them. ``config.l2`` is
        then the initial λ (a number). On resuming from a checkpoint it is called again
        on the stored records (so it must be a deterministic function of its calls).
      rule: an update rule instead of the L2 rules of ``config``: any ``(init, update)`` pair
        such as an optax transformation (``optax.adamw(...)``), θ_{s+1} = θ_s + updates.
        ``config.learning_rate`` is then unused and ``config.l2`` and ``config.momentum`` must
        be 0 (weight decay and momentum belong to the rule; ``loss_l2`` records 0).
      checkpoint: a file to save the run's state to, atomically, as it goes; a run given the
        same file resumes from its last checkpoint, with the results of an uninterrupted run
        (`ntk_l2.finite.checkpoint`: a checkpoint of another run, or corrupted, is ignored with
        a `CheckpointWarning`). Needs numbers for ``config.learning_rate`` and ``config.l2``
        (a schedule cannot be fingerprinted) and the rules of ``config`` (no ``rule``).
      checkpoint_every: save at every multiple of this many steps and at the end, instead of
        after every record step.

    Returns:
      A `TrainResult`; a diverged seed keeps NaN records after its divergence.
    """
    if rule is not None:
        rule = _custom_rule(rule, config, l2_controller)
    if checkpoint is not None:
        _check_checkpoint(checkpoint, checkpoint_every, config, rule)
    elif checkpoint_every is not None:
        raise ValueError("checkpoint_every: needs a checkpoint file")
    dtype = jnp.float64 if config.float64 else jnp.float32
    ctx = enable_x64() if config.float64 else contextlib.nullcontext()
    with ctx:
        run = _setup(
            init_fn, apply_fn, x_train, y_train, config, x_test, tuple(seeds), linearized, l2_controller, rule, dtype
        )
        bar = _progress_bar(run, progress, _describe(config, tuple(seeds), label, l2_controller is not None))
        recorder = _drive(run, bar, l2_controller, checkpoint, checkpoint_every)
    return recorder.result(
        ntk_steps=config.ntk_steps,
        labels_train=labels_train,
        labels_test=labels_test,
        member_seed=np.asarray([seed for _, seed in run.members]),
        member_l2=np.asarray([lam for lam, _ in run.members]) if run.dynamic_l2 else None,
    )


def _custom_rule(rule: Any, config: TrainConfig, l2_controller: Controller | None) -> UpdateRule:
    rule = check_rule(rule)
    if isinstance(config.l2, tuple) or callable(config.l2) or config.l2 != 0:
        raise ValueError(
            f"l2: with a rule, weight decay belongs to the rule (e.g. optax.add_decayed_weights); "
            f"l2 must be 0, got {config.l2!r}"
        )
    if config.momentum:
        raise ValueError(f"momentum: with a rule, momentum belongs to the rule; must be 0, got {config.momentum!r}")
    if l2_controller is not None:
        raise ValueError("l2_controller: needs the L2 rules of the config, not a custom rule")
    return rule


def _check_checkpoint(path: Any, every: int | None, config: TrainConfig, rule: UpdateRule | None) -> None:
    check_output(path, "checkpoint")
    if every is not None and (not isinstance(every, (int, np.integer)) or isinstance(every, bool) or every < 1):
        raise ValueError(f"checkpoint_every: must be None or an integer >= 1, got {every!r}")
    for name in ("learning_rate", "l2"):
        if callable(getattr(config, name)):
            raise ValueError(
                f"checkpoint: {name} is a function of the step, which cannot be fingerprinted; checkpoints need numbers"
            )
    if rule is not None:
        raise ValueError("checkpoint: a custom rule cannot be fingerprinted; checkpoints need the rules of the config")


@dataclass(frozen=True)
class _Run:
    """Everything fixed for one call of `train`: data, members, the compiled loop and observer."""

    config: TrainConfig
    x_train: Any
    y_train: Any
    x_test: Any | None
    seeds: tuple[int, ...]
    members: tuple[tuple[float, int], ...]  # (λ, seed), λ-major
    dynamic_l2: bool  # λ per member in the rule's state (a λ grid or a controller)
    linearized: bool
    carry0: Carry
    advance: Callable[[Carry, Any, Any], Carry]
    observe: Callable[[Any, Any], dict[str, Any]]
    ntk_fn: Callable[..., Any]
    probe: Any


def _setup(
    init_fn: Callable[..., Any],
    apply_fn: Callable[..., Any],
    x_train: Array,
    y_train: Array,
    config: TrainConfig,
    x_test: Array | None,
    seeds: tuple[int, ...],
    linearized: bool,
    l2_controller: Controller | None,
    rule: UpdateRule | None,
    dtype: Any,
) -> _Run:
    """Check the data, draw θ_0 for every member and compile the loop and the observer."""
    if not seeds:
        raise ValueError("seeds: need at least one seed")
    x_tr = jnp.asarray(x_train, dtype)
    y_tr = jnp.asarray(y_train, dtype)
    if y_tr.ndim != 2 or y_tr.shape[0] != x_tr.shape[0]:
        raise ValueError(f"y_train: expected shape ({x_tr.shape[0]}, c), got {tuple(y_tr.shape)}")
    x_te = None if x_test is None else jnp.asarray(x_test, dtype)
    n = y_tr.shape[0]
    if (config.batch_size or n) > n:
        raise ValueError(f"batch_size: {config.batch_size} exceeds the number of training points {n}")
    if l2_controller is not None and (callable(config.l2) or isinstance(config.l2, tuple)):
        raise ValueError("l2: with l2_controller, l2 must be a number (the initial λ)")
    # With a λ grid or a controller each member carries its own λ in the rule's state;
    # otherwise λ is the schedule λ(s), shared by all members.
    dynamic = isinstance(config.l2, tuple) or l2_controller is not None
    l2_values = config.l2 if isinstance(config.l2, tuple) else ((float(config.l2),) if dynamic else (0.0,))
    members = tuple((lam, seed) for lam in l2_values for seed in seeds)
    if rule is None:
        rule = l2_rule(
            config.learning_rate,
            l2_values[0] if dynamic else config.l2,
            config.momentum,
            config.nesterov,
            l2_in_state=dynamic,
        )
    keys = jnp.stack([jax.random.PRNGKey(seed + config.seed_offset) for _, seed in members])

    def init_one(key):
        _, params = init_fn(key, (-1,) + tuple(x_tr.shape[1:]))
        return jax.tree_util.tree_map(lambda p: jnp.asarray(p, dtype), params)

    params0 = jax.vmap(init_one)(keys)
    state0 = jax.vmap(rule.init)(params0)
    if dynamic:
        state0 = set_l2(state0, jnp.asarray([lam for lam, _ in members], dtype))
    carry0 = Carry(params0, state0, params0, jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys))
    f = linearize(apply_fn) if linearized else (lambda p, x, p0: apply_fn(p, x))
    advance = make_advance(make_step(data_loss_grad(f), rule, x_tr, y_tr, config.batch_size), len(members))
    return _Run(
        config,
        x_tr,
        y_tr,
        x_te,
        seeds,
        members,
        dynamic,
        linearized,
        carry0,
        advance,
        make_observer(f, x_tr, x_te),
        make_ntk_fn(apply_fn),
        x_tr[: min(config.n_probe, n)],
    )


def _cuts(record: tuple[int, ...], every: int | None, smooth: bool = False) -> list[int]:
    """The steps where the loop stops: the record steps, the multiples of ``every`` before the last, and
    with ``smooth`` every ~1% of the run (for the progress bar: the same steps, run in more segments)."""
    extra = set(range(every, record[-1], every)) if every else set()
    if smooth:
        chunk = max(1, -(-record[-1] // 100))
        extra |= set(range(chunk, record[-1], chunk))
    return sorted(set(record) | extra)


def _drive(
    run: _Run,
    bar: Any,
    l2_controller: Controller | None,
    checkpoint: str | os.PathLike | None,
    every: int | None,
) -> Recorder:
    """Run the loop from step 0, or from the checkpoint, to the last record step (or divergence of all)."""
    config = run.config
    record = config.recorded_steps()
    cuts = _cuts(record, every if checkpoint is not None else None, smooth=not bar.disable)
    save_at = set(record) if every is None else set(range(every, record[-1] + 1, every))
    carry, recorder = run.carry0, Recorder.start(run.y_train, len(run.members), config.divergence_factor)
    last, done, start, run_fp = 0, False, -1, ""
    if checkpoint is not None:
        run_fp = _fingerprint(run, l2_controller is not None)
        restored = load_checkpoint(checkpoint, run_fp, run.carry0, run.y_train, config.divergence_factor)
        if restored is not None:
            carry, recorder, last, done = restored
            start = last
            if l2_controller is not None:
                _replay(l2_controller, recorder, np.asarray(run.carry0.rule_state.l2, np.float64), run)
    bar.update(last)
    todo = [] if done else [s for s in cuts if s > start]
    record_set = set(record)
    for s in todo:
        if s > last:
            carry = run.advance(carry, last, s)
            bar.update(s - last)
            last = s
        if s in record_set:
            carry = _record(run, recorder, carry, s, l2_controller)
        done = recorder.finished or s == cuts[-1]
        if checkpoint is not None and (done or s in save_at):
            save_checkpoint(checkpoint, run_fp, s, done, carry, recorder)
        if recorder.finished:
            break
    bar.close()
    return recorder


def _l2_now(run: _Run, carry: Carry, step: int) -> float | np.ndarray:
    """λ_s in force at ``step``: per member (dynamic λ), else the schedule's value."""
    if run.dynamic_l2:
        return np.asarray(carry.rule_state.l2, np.float64)
    l2 = run.config.l2
    return float(l2(step) if callable(l2) else l2)


def _record(run: _Run, recorder: Recorder, carry: Carry, step: int, controller: Controller | None) -> Carry:
    """Record step ``step``, let the controller set λ, record the probe NTK; returns the carry."""
    obs = jax.tree_util.tree_map(np.asarray, run.observe(carry.params, carry.params0))
    lam = _l2_now(run, carry, step)
    row = recorder.record(step, obs, lam)
    if controller is not None:
        new = controller(int(step), {"fx_train": row["fx_train"], "loss_data": row["loss_data"], "l2": lam})
        if new is not None:
            carry = carry._replace(rule_state=set_l2(carry.rule_state, _checked_l2(new, len(run.members))))
        recorder.l2_rows.append(np.asarray(carry.rule_state.l2, np.float64))
    if step in run.config.ntk_steps:
        # A linearized network's NTK is its NTK at θ_0, whatever θ is.
        recorder.ntk_rows.append(probe_ntk(run.ntk_fn, run.probe, carry.params0 if run.linearized else carry.params))
    return carry


def _checked_l2(new: Any, n_members: int) -> np.ndarray:
    new = np.broadcast_to(np.asarray(new, np.float64), (n_members,))
    if not np.all(np.isfinite(new) & (new >= 0)):
        raise ValueError(f"l2_controller: returned {new!r}; λ must be finite and >= 0")
    return new


def _replay(controller: Controller, recorder: Recorder, initial: np.ndarray, run: _Run) -> None:
    """Call the controller on the stored records as the interrupted run did, so that it is in the
    state it had; it must return the stored λ (else it is not a deterministic function of its calls)."""
    lam = initial
    dtype = run.carry0.rule_state.l2.dtype
    for step, row, stored in zip(recorder.steps, recorder.rows, recorder.l2_rows, strict=True):
        new = controller(step, {"fx_train": row["fx_train"], "loss_data": row["loss_data"], "l2": lam.copy()})
        got = lam if new is None else np.asarray(jnp.asarray(_checked_l2(new, len(lam)), dtype), np.float64)
        if not np.array_equal(got, stored):
            raise ValueError(
                f"l2_controller: replayed on the checkpoint's records it returned λ = {got} at step "
                f"{step}, the checkpoint holds {stored}; it must be a deterministic function of its calls"
            )
        lam = stored


def _fingerprint(run: _Run, controlled: bool) -> str:
    """`ntk_l2.finite.checkpoint.fingerprint` of the run: the config, seeds, data, θ_0 and f(θ_0; X)."""
    params0 = run.carry0.params0
    settings = {
        **asdict(run.config),
        "record": list(run.config.recorded_steps()),
        "seeds": list(run.seeds),
        "linearized": run.linearized,
        "l2_controller": controlled,
        "test": run.x_test is not None,
        "params": str(jax.tree_util.tree_structure(params0)),
    }
    f0 = run.observe(params0, params0)["fx_train"]
    x_te = [] if run.x_test is None else [run.x_test]
    return fingerprint(settings, [run.x_train, run.y_train, *x_te, *jax.tree_util.tree_leaves(params0), f0])


def _describe(config: TrainConfig, seeds: tuple[int, ...], label: str | None, controlled: bool) -> str:
    """What a run trains, for its progress bar: ``label``, λ, η and the seeds."""

    def value(v: Any) -> str:
        if callable(v):
            return "scheduled"
        return "{" + ", ".join(f"{x:g}" for x in v) + "}" if isinstance(v, tuple) else f"{v:g}"

    lam = "AutoL2" if controlled else value(config.l2)
    seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}–{seeds[-1]}"
    parts = [label, f"λ {lam}", f"η {value(config.learning_rate)}", seed_text]
    return ", ".join(p for p in parts if p)


def _progress_bar(run: _Run, progress: bool | None, desc: str):
    from tqdm import tqdm  # tqdm.auto warns in notebooks without ipywidgets

    total = run.config.steps
    show = progress if progress is not None else total > 2000
    return tqdm(total=total, disable=not show, unit="step", desc=desc, leave=False)
