"""Personalised propensity ranking.

- `interactions`: interaction/profile contracts, keyed-hash pseudonymisation, RTR and H&M adapters.
- `simulator`: SIMULATED Myntra users and logs with a documented hidden utility.
- `features`: pure vectorised primitives; `rtr`, `hm`, `myntra`: each dataset's features.
- `lgbm`: LightGBM lambdarank/binary training, calibration, model bundles.
- `train`, `myntra_train`, `evaluate`: `mmrec rank train | eval`; `latency`: `mmrec rank latency`.
- `ranker` (`Ranker`, `RankContext`) and `users` (`UserStore`, `UserProfile`): what serving calls.
"""
