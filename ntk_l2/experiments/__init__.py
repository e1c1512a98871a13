"""Experiments that produce result directories: theory vs finite width (`compare`), the law
runs (`laws`), the demo, deep linear experiments, predictions from kernel files
(`predict_file`), stored resumable runs (`runs`) and figures (`plots`, with the layout in `plot_style`
and the comparison figure in `plot_comparison`). The only code that
writes result files. May import every subpackage except `ntk_l2.cli`.
"""
