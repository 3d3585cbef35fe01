"""Scene-aligned benchmark: suites, judges on catalog truth, runner, report and release gate.

Modules: ``suite`` (YAML format, case expansion), ``personas`` (real-profile personas and their
held-out interactions), ``judges`` (pure scoring functions), ``system`` (the system under test:
in-process ``Recommender`` or a live API), ``runner`` (resumable runs), ``metrics``
(aggregation and bootstrap), ``report`` (self-contained HTML), ``compare`` (release gate).
"""
