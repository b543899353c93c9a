"""`imgclf tune`: hyperparameter search with Optuna, then the best configuration retrained as a run.

    result = imgclf.tune("photos/", trials=12, timeout=600)
    result.best_value, result.best_params, result.run.path

tune.py    imgclf.tune: set up or join the study, run the worker loop, summarise, retrain the best
space.py   the search space as data (defaults + YAML overrides) and its mapping onto train settings
budget.py  a one-epoch probe of the default configuration: resolved defaults, epochs the time allows
study.py   storage, sampler, pruner; giving back interrupted trials and those of dead workers
worker.py  the loop each worker runs: ask, train (reporting each epoch to the pruner), tell
results.py progress lines, the summary, tune.json / trials.csv and the run's tuning.json

Optuna is imported only here, so `import imgclf` and `imgclf train` never pay for it.
"""
