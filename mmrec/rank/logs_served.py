"""What served each logged answer, so that training from logs featurises it as serving did.

Every answer's impression row carries the versions that produced it (``ranker``, ``users``).
`mmrec.rank.logs_train` uses them three ways (`RankConfig.logs`):

- user state (``user_state: served``): the shopper as the server's `UserStore` of that version
  described them to `Ranker.score`, through the same function (`ranker.profile_states`), with
  recency measured to the answer's time. The store is keyed by raw ids and the logs by
  pseudonyms, so its ids are pseudonymised with the server's key (`RankConfig.pseudonym`, the
  same env var by default). A logged user the store does not know was answered as a cold-start
  shopper, and is featurised as one.
- warm start (``warm_start: true``): the ranker that answered most training answers is the
  base. Its item statistics are what it served with; the logged impressions and clicks add to
  them, as of each day. Its trees are continued by the new ones, so a few days of logs refine
  a model fitted on far more traffic instead of replacing it. Its item vocabularies are kept
  (the continued trees split on its category codes).
- negatives (``negatives: seen``): training rows are the shown items the app reported seen.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable

import numpy as np
import pyarrow as pa

from mmrec import kinds
from mmrec.artifacts import Artifact, ArtifactStore
from mmrec.errors import InputError
from mmrec.rank import myntra as Y
from mmrec.rank.config import RankConfig


def answer_versions(impressions: pa.Table) -> dict[str, dict[str, str]]:
    """request_id -> {"ranker": version, "users": version} as logged (missing keys left out)."""
    out: dict[str, dict[str, str]] = {}
    for rid, v in zip(impressions["request_id"].to_pylist(), impressions["versions"].to_pylist()):
        if rid in out:
            continue
        d = dict(v or [])
        # the users entry reads "<version> (simulated)" for the simulated shoppers' store
        out[rid] = {k: str(d[k]).split()[0] for k in ("ranker", "users") if d.get(k)}
    return out


def base_ranker(store: ArtifactStore, versions: dict[str, dict[str, str]], request_ids,
                log: Callable) -> Artifact | None:
    """The ranker version that answered most of ``request_ids``; None when none is logged."""
    count = Counter(versions.get(r, {}).get("ranker") for r in request_ids)
    count.pop(None, None)
    if not count:
        log("warm start: the logs name no ranker version; statistics and trees from the logs alone")
        return None
    version, n = count.most_common(1)[0]
    try:
        art = store.load(kinds.RANKER, version)
    except Exception as e:  # noqa: BLE001 - re-raised with the fix
        raise InputError(f"warm start: ranker/{version} answered {n} of the training answers but "
                         f"cannot be loaded ({e}); restore it, or train without it: "
                         "--set logs.warm_start=false") from e
    if len(count) > 1:
        log(f"warm start: answers came from {dict(count)}; the base is the most frequent")
    return art


def served_users(store: ArtifactStore, cfg: RankConfig, request_ids, request_user: list[str | None],
                 versions: dict[str, dict[str, str]], log: Callable) -> tuple[list, dict]:
    """The `UserProfile` (or None) that the server's user store gave each answer's shopper."""
    from mmrec.feedback.events import pseudonymiser
    from mmrec.rank.users import UserStore

    wanted = sorted({v["users"] for v in versions.values() if v.get("users")})
    stores, by_pseudonym = {}, {}
    if wanted:
        pseudo = pseudonymiser(cfg.pseudonym)
        for version in wanted:
            try:
                stores[version] = UserStore.load(store, version)
            except Exception as e:  # noqa: BLE001 - re-raised with the fix
                raise InputError(f"interactions_sim/{version}, the user store that served the logged "
                                 f"answers, cannot be loaded ({e}); restore it, or train with the "
                                 "logged histories: --set logs.user_state=logs") from e
            by_pseudonym[version] = {pseudo(u): u for u in stores[version].ids()}
    out, known, signed_in = [], 0, 0
    for rid, user in zip(request_ids, request_user):
        v = versions.get(rid, {}).get("users")
        prof = None
        if user is not None:
            signed_in += 1
            raw = by_pseudonym.get(v, {}).get(user) if v else None
            prof = stores[v].get(raw) if raw is not None else None
            known += prof is not None
        out.append(prof)
    info = {"user_stores": wanted, "answers": len(out), "signed_in": signed_in,
            "known_to_the_user_store": known}
    if wanted and signed_in and not known:
        raise InputError(
            f"none of the {signed_in} signed-in answers' shoppers is in the user store "
            f"{wanted} that served them: the pseudonym key differs from the server's (set "
            f"{cfg.pseudonym.key_env} to the key the server ran with), or train with the "
            "logged histories instead: --set logs.user_state=logs")
    log(f"user state as served: {known} of {signed_in} signed-in answers from user store(s) "
        f"{wanted or 'none (every answer was cold start)'}")
    return out, info


def recompute_stats(d, items: Y.ItemTable, base: Y.ItemStats | None) -> Y.ItemStats:
    """Daily item statistics of the logged impressions (as `decode` counts them, with the
    current user segments), plus ``base``'s final snapshot in every period."""
    ok = ~d.req_new[d.req] & ~d.item_held_out & (d.item_row >= 0)
    r = d.req[ok]
    logged = Y.ItemStats.from_events(d.item_row[ok], d.req_week[r], d.n_weeks, len(items.item_ids),
                                     d.users.segment[r], d.ctx.occasion[r],
                                     len(items.vocabs["usage"]), d.clicked[ok], d.bought[ok])
    if base is None:
        return logged
    return Y.ItemStats(*(a + b[-1:] for a, b in zip(logged.arrays(), base.arrays())))


def seen_rows(joined: pa.Table, d) -> np.ndarray | None:
    """Per impression row of ``d``: was it reported seen? None when no row was (an app that
    sends no impression_seen)."""
    if not any(joined["seen"].to_pylist()):
        return None
    seen = {(r, i) for r, i, s in zip(joined["request_id"].to_pylist(), joined["item_id"].to_pylist(),
                                      joined["seen"].to_pylist()) if s}
    return np.fromiter((k in seen for k in row_keys(d)), bool, count=len(d.req))


def row_keys(d, rows: np.ndarray | None = None) -> list[tuple[str, str | None]]:
    """The joined table's key, (request_id, item_id), of each impression row of ``d`` (of
    ``rows`` when given); item_id None for an item not in the catalog."""
    req, item = (d.req, d.item_row) if rows is None else (d.req[rows], d.item_row[rows])
    ids = d.items.item_ids
    return [(d.request_ids[q], ids[i] if i >= 0 else None) for q, i in zip(req, item)]
