"""The feedback loop's store: impressions the API answered, events the apps report, profiles.

- `store`: the SQLite file (WAL): schema, migrations, writes, deletion, retention.
- `impressions`: the off-hot-path impression logger (bounded queue + one writer thread).
- `events`: the event and profile contracts of `POST /v1/events` and `PUT /v1/users/{id}`,
  and the per-event checks a batch answer reports.
- `export`: date-partitioned Parquet for training (the `INTERACTIONS_SCHEMA` family).

No torch, no FastAPI here: the CLI (`mmrec feedback ...`) and the server share these modules.
"""
