"""A/B experiments on the served recommender.

- `config`: the experiment as serve.yaml's ``ab:`` section, and the stable bucketing of users.
- `router`: one recommender per variant over shared catalog, recall and caches; each request
  goes to its user's variant, whose name every response carries in ``versions["variant"]``.
- `report`: per-variant rates with 95% intervals, and each variant's difference to control
  (`mmrec ab report`), from the impressions and events that `mmrec.feedback.attribution` joins.
"""
