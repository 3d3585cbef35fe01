"""Feature primitives and the RTR features on hand-made tables with known answers; leakage guard."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from mmrec.rank import features as F
from mmrec.rank import metrics as M
from mmrec.rank import rtr as R
from mmrec.rank.interactions import Pseudonymiser, read_rtr
from rank_fixtures import rtr_rows, write_rtr


def test_encode_and_vocab():
    vocab = F.build_vocab(["b", "a", None, "b", "c", "a", "b"])
    assert vocab == ["b", "a", "c"]                       # by frequency, ties by name
    assert F.encode(["a", None, "zz", "c"], vocab).tolist() == [1, -1, -1, 2]
    assert F.build_vocab(["x", "x", "y"], min_count=2) == ["x"]


def test_cumulative_counts_exclude_the_current_period():
    period = np.array([0, 0, 1, 2, 2])
    key = np.array([0, 1, 1, 0, -1])                      # -1: unknown, never counted
    cum = F.cumulative_counts(period, key, 3, 2)[..., 0]
    assert cum.tolist() == [[0, 0], [1, 1], [1, 2], [2, 2]]
    w = F.cumulative_counts(period, key, 3, 2, weights=np.array([1, 2, 3, 4, 5]))[..., 0]
    assert w[3].tolist() == [5, 5]
    assert F.first_period(cum).tolist() == [1, 1]


def test_shares_means_std():
    assert F.smoothed_share(np.array([2.0]), np.array([4.0]), 0.5, 4.0)[0] == pytest.approx(0.5)
    assert F.smoothed_share(np.array([0.0]), np.array([0.0]), 0.2, 3.0)[0] == pytest.approx(0.2)
    assert F.smoothed_mean(np.array([70.0]), np.array([2.0]), 30.0, 5.0)[0] == pytest.approx(220 / 7)
    s = F.std_from_moments(np.array([6.0, 3.0]), np.array([20.0, 9.0]), np.array([2.0, 1.0]))
    assert s[0] == pytest.approx(np.std([2.0, 4.0])) and np.isnan(s[1])


def test_asof_index_picks_latest_profile_not_after_the_event():
    rows = F.asof_index([0, 0, 1], [10, 20, 5], [0, 0, 0, 1, 2, 1], [5, 10, 25, 4, 9, 6])
    assert rows.tolist() == [-1, 0, 1, -1, -1, 2]


def test_history_and_prefix_counts_are_strictly_before():
    # user 0 has events in periods 1, 2, 2; user 1 in period 0
    h = F.history_counts([0, 0, 0, 1], [1, 2, 2, 0], [0, 0, 1, 1], [2, 3, 0, 1])
    assert h.tolist() == [1, 3, 0, 1]
    h_key = F.history_counts([0, 0, 0], [1, 2, 2], [0, 0], [3, 3], key=[5, 5, 6], q_key=[5, 6])
    assert h_key.tolist() == [2, 1]
    counts, n, last = F.prefix_counts([0, 0, 1, 0], [5, 1, 3, 9], [1, 0, 1, -1], 2,
                                      [0, 0, 1, 2, 0], [1, 6, 4, 0, 10])
    assert counts.tolist() == [[0, 0], [1, 1], [0, 1], [0, 0], [1, 1]]
    assert n.tolist() == [0, 2, 1, 0, 3] and last.tolist() == [-1, 5, 3, -1, 9]


def test_gather_with_missing_index():
    g = F.gather(np.arange(6.0).reshape(2, 3), np.array([1, -1]), np.array([2, 0]))
    assert g[0] == 5.0 and np.isnan(g[1])


def test_metrics_known_values():
    offsets = np.array([0, 3, 6])
    scores = np.array([0.9, 0.1, 0.5, 0.2, 0.8, 0.3])
    labels = np.array([0, 1, 0, 0, 0, 0])
    nd = M.ndcg_at_k(scores, labels, offsets, 10)
    assert nd[0] == pytest.approx(1 / np.log2(4)) and np.isnan(nd[1])
    ap = M.average_precision_at_k(scores, labels, offsets, 12)
    assert ap[0] == pytest.approx(1 / 3)
    assert M.recall_at_k(scores, labels, offsets, 2)[0] == 0.0
    assert M.auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert M.auc([1, 1], [0, 1]) == pytest.approx(0.5)           # ties count half
    ece = M.expected_calibration_error(np.array([0.2] * 10), np.array([1, 1] + [0] * 8), bins=1)
    assert ece["ece"] == pytest.approx(0.0) and ece["base_rate"] == pytest.approx(0.2)


def test_metric_ties_do_not_favour_row_order():
    # every score tied, positive first: expected NDCG of a random order, not 1.0
    n = 100
    offsets = np.arange(0, n * 10 + 1, 10)
    labels = np.tile([1] + [0] * 9, n)
    nd = M.ndcg_at_k(np.zeros(n * 10), labels, offsets, 10)
    assert 0.2 < nd.mean() < 0.5


def test_leakage_guard_refuses_review_time_names():
    for bad in ("rating", "fit", "review_fit", "value", "x_rating", "recommend_share"):
        with pytest.raises(ValueError, match="review-time"):
            F.check_no_leakage(["u_age", bad])
    F.check_no_leakage(R.feature_names())   # the RTR feature list is clean


# -- RTR features on a hand-made table --------------------------------------------------------

def _decoded(tmp_path, rows=None):
    path = write_rtr(tmp_path / "rtr.parquet", rows)
    return R.decode(read_rtr(path, Pseudonymiser(b"k" * 32, namespace="rtr")))


def test_rtr_features_known_answers(tmp_path):
    d = _decoded(tmp_path)
    st = R.build_stats(d, np.arange(len(d.user)))
    row = 3                                    # 2016-02-02, wedding, athletic, size 10, age 35
    item_a = d.item[0]                         # item 11: rented in January by two users
    fs = R.features(d, st, np.array([row]), np.array([item_a]))
    col = dict(zip(fs.names, fs.X[0]))
    assert col["i_share_all"] == pytest.approx(1000 * 2 / 3)      # 2 of 3 January rentals
    n_occ = len(d.vocabs["occasion"])                              # wedding, party, work
    prior = (2 + 1 / n_occ) / (3 + 1)                              # January: 2 of 3 weddings
    share = (1 + R.SMOOTH * prior) / (2 + R.SMOOTH)                # item 11: 1 of 2 weddings
    assert col["i_occ_share"] == pytest.approx(share, rel=1e-5)
    assert col["i_occ_lift"] == pytest.approx(share / prior, rel=1e-5)
    ages = [30, 40, 26, 35, 30]                                    # 116 is dropped as invalid
    g = float(np.mean(ages))
    assert col["i_mean_age"] == pytest.approx((30 + 40 + R.SMOOTH * g) / (2 + R.SMOOTH), rel=1e-5)
    assert col["x_d_age"] == pytest.approx(35 - col["i_mean_age"], rel=1e-5)
    assert col["i_months_active"] == 1                             # first rented one month before
    assert col["u_size"] == 10 and col["c_month"] == 2
    # a later row of a new item (33, first rented in March) has no statistics yet
    fs_new = R.features(d, st, np.array([3]), np.array([d.item[5]]))
    new = dict(zip(fs_new.names, fs_new.X[0]))
    assert new["i_share_all"] == 0 and new["i_months_active"] == -1
    assert np.isnan(dict(zip(fs.names, R.features(d, st, np.array([5]), np.array([item_a])).X[0]))["u_age"])


def test_rtr_features_ignore_review_time_fields(tmp_path):
    """Shuffling rating / fit / recommend (written after the rental) leaves features unchanged."""
    rows = rtr_rows()
    d1 = _decoded(tmp_path / "a", rows)
    rng = np.random.default_rng(0)
    shuffled = [dict(r) for r in rows]
    for col in ("rating", "fit", "recommend"):
        vals = [r[col] for r in rows]
        rng.shuffle(vals)
        vals = vals[::-1] if vals == [r[col] for r in rows] else vals
        for r, v in zip(shuffled, vals):
            r[col] = v
    d2 = _decoded(tmp_path / "b", shuffled)
    assert not np.array_equal(d1.value, d2.value, equal_nan=True)  # the labels did change
    n = len(d1.user)
    rows_ix = np.repeat(np.arange(n), 3)
    items = np.tile(np.arange(d1.n_items), n)
    f1 = R.features(d1, R.build_stats(d1, np.arange(n)), rows_ix, items, R.history_of(d1, np.arange(n)))
    f2 = R.features(d2, R.build_stats(d2, np.arange(n)), rows_ix, items, R.history_of(d2, np.arange(n)))
    assert f1.names == f2.names
    np.testing.assert_array_equal(f1.X, f2.X)
    assert set(R.FEATURE_INPUT_COLUMNS).isdisjoint({"rating", "fit", "recommend", "value", "review_fit"})


def test_sampled_candidates_come_from_the_same_month(tmp_path):
    d = _decoded(tmp_path)
    g = R.sample_groups(d, np.array([0, 3]), 5, "uniform_active", np.random.default_rng(0))
    assert g.n_groups == 2 and g.label.sum() == 2
    for k in range(g.n_groups):
        sl = slice(g.offsets[k], g.offsets[k + 1])
        assert len(set(g.item[sl])) == len(g.item[sl])            # no duplicates
        months = {int(d.period[i]) for i in np.nonzero(np.isin(d.item, g.item[sl]))[0]}
        assert int(d.period[g.row[sl][0]]) in months
    pa.array(g.item)  # plain integer codes
