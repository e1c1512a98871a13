"""Training finite networks in JAX: gradient descent, momentum and minibatch SGD with L2,
recorded trajectories, seeds vmapped (`train`). May import `ntk_l2.common`, `ntk_l2.theory`,
`ntk_l2.data` and `ntk_l2.networks`.

Modules: ``train`` (`train`, the public entry point), ``config`` (`TrainConfig`, `TrainResult`),
``rules`` (update rules: the exact L2 rules, or any optax transformation), ``loop`` (the compiled
loop), ``recorder`` (records, divergence, probe NTK), ``checkpoint`` (resuming a killed run),
``scale_invariant`` (L2 as an exponentially growing learning rate for scale-invariant weights)
and ``equilibrium`` (weight norms, effective learning rates and angular updates of those weights).
"""
