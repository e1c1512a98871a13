"""Experiments that produce result directories: theory vs finite width (`compare`), the law runs
(`laws`, with the shared pieces in `law_runs` and AutoL2 in `law_autol2`), the demo, deep linear
experiments, predictions from kernel files (`predict_file`) and kernel stores (`predict_store`), kernels
of whole datasets computed tile by tile into a kernel store (`kernels`), stored resumable runs (`runs`) and
figures (`plots`, with the layout in `plot_style`, the comparison figure in `plot_comparison` and the
law figures in `plot_laws`). The only code that writes result files. May import every subpackage
except `ntk_l2.cli`.
"""
