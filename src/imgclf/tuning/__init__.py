"""`imgclf tune`: hyperparameter search with Optuna, then the best configuration retrained as a run.

    result = imgclf.tune("photos/", trials=12, timeout=600)
    result.best_value, result.best_params, result.run.path

space.py   the search space as data (defaults + YAML overrides) and its mapping onto train settings
budget.py  a one-epoch probe of the default configuration: resolved defaults, epochs the time allows
study.py   storage, sampler, pruner and the worker loop (resume, shared studies, interrupted trials)
results.py progress lines, the summary, tune.json / trials.csv and the run's tuning.json

Optuna is imported only here, so `import imgclf` and `imgclf train` never pay for it.
"""
