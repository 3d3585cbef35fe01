"""LightGBM helpers: lambdarank grouped by request, a binary propensity variant, calibration.

Both models use early stopping on a validation slice that is later in time (and, for RTR,
made of other users) than the training rows; the calibrators are fitted on that same slice,
never on training rows, whose scores are optimistic. LightGBM is imported inside functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmrec.rank.config import LgbmConfig
from mmrec.rank.features import FeatureSet


def lgb_params(cfg: LgbmConfig, objective: str) -> dict[str, Any]:
    params = {
        "objective": objective,
        "num_leaves": cfg.num_leaves, "learning_rate": cfg.learning_rate,
        "min_data_in_leaf": cfg.min_data_in_leaf, "feature_fraction": cfg.feature_fraction,
        "bagging_fraction": cfg.bagging_fraction, "bagging_freq": cfg.bagging_freq,
        "lambda_l2": cfg.lambda_l2, "max_bin": cfg.max_bin, "num_threads": cfg.num_threads,
        "seed": cfg.seed, "deterministic": True, "force_col_wise": True, "verbosity": -1,
    }
    if objective == "lambdarank":
        params.update(metric="ndcg", eval_at=[10], lambdarank_truncation_level=20)
    else:
        params.update(metric="binary_logloss")
    return params


def _dataset(lgb, fs: FeatureSet, y: np.ndarray, sizes: np.ndarray | None, reference=None):
    return lgb.Dataset(fs.X, label=y, group=sizes, feature_name=fs.names,
                       categorical_feature=fs.categorical or "auto", reference=reference,
                       free_raw_data=True)


@dataclass
class TrainResult:
    booster: Any
    best_iteration: int
    best_score: float
    history: list[float]


def train_model(objective: str, train: FeatureSet, y: np.ndarray, val: FeatureSet,
                yv: np.ndarray, cfg: LgbmConfig, *, sizes: np.ndarray | None = None,
                val_sizes: np.ndarray | None = None, log_every: int = 0,
                init_model: Any | None = None) -> TrainResult:
    """Fit ``lambdarank`` (needs group sizes) or ``binary`` with early stopping on ``val``.

    ``init_model``: a booster over the same features whose trees the new ones continue
    (warm start); ``best_iteration`` then counts its trees too.
    """
    import lightgbm as lgb

    if objective == "lambdarank" and (sizes is None or val_sizes is None):
        raise ValueError("lambdarank needs group sizes for train and validation")
    if train.names != val.names:
        raise ValueError("train and validation feature names differ")
    dtrain = _dataset(lgb, train, y, sizes)
    dval = _dataset(lgb, val, yv, val_sizes, reference=dtrain)
    record: dict[str, dict[str, list[float]]] = {}
    callbacks = [lgb.early_stopping(cfg.early_stopping_rounds, verbose=False),
                 lgb.record_evaluation(record)]
    if log_every:
        callbacks.append(lgb.log_evaluation(log_every))
    booster = lgb.train(lgb_params(cfg, objective), dtrain, num_boost_round=cfg.n_estimators,
                        valid_sets=[dval], valid_names=["val"], callbacks=callbacks,
                        init_model=init_model)
    hist = next(iter(record["val"].values())) if record.get("val") else []
    best = booster.best_iteration or booster.current_iteration()
    # keep only the trees up to the best iteration: smaller model, faster scoring
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    new = best - (init_model.current_iteration() if init_model is not None else 0)  # history: new trees only
    return TrainResult(booster, int(best), float(hist[new - 1]) if hist and new >= 1 else float("nan"),
                       [float(h) for h in hist])


def predict(booster, X: np.ndarray) -> np.ndarray:
    """Raw scores with one thread (the serving setting)."""
    return booster.predict(X, raw_score=True, num_threads=1)


def importance(booster, top: int | None = None) -> list[dict[str, Any]]:
    """Gain and split importance per feature, highest gain first (gain shares sum to 1)."""
    names = booster.feature_name()
    gain = booster.feature_importance("gain")
    split = booster.feature_importance("split")
    tot = float(gain.sum()) or 1.0
    rows = sorted(({"feature": n, "gain_share": round(float(g) / tot, 5), "splits": int(s)}
                   for n, g, s in zip(names, gain, split)), key=lambda r: -r["gain_share"])
    return rows[:top] if top else rows


# -- calibration ---------------------------------------------------------------------------

@dataclass
class Calibrator:
    """Maps raw model scores to probabilities. Platt: sigmoid(a * s + b); isotonic: interp."""

    method: str
    a: float = 1.0
    b: float = 0.0
    x: list[float] | None = None
    y: list[float] | None = None

    def __call__(self, s: np.ndarray) -> np.ndarray:
        s = np.asarray(s, np.float64)
        if self.method == "platt":
            return 1.0 / (1.0 + np.exp(-np.clip(self.a * s + self.b, -50, 50)))
        return np.interp(s, self.x, self.y)

    def to_json(self) -> str:
        return json.dumps({"method": self.method, "a": self.a, "b": self.b, "x": self.x,
                           "y": self.y})

    @classmethod
    def from_json(cls, text: str) -> "Calibrator":
        return cls(**json.loads(text))


def fit_platt(scores: np.ndarray, labels: np.ndarray, iters: int = 100) -> Calibrator:
    """Logistic fit of labels on one score: damped Newton from the constant model.

    Platt's (1999) soft targets keep the fit finite when the classes separate.
    """
    s = np.asarray(scores, np.float64)
    y = np.asarray(labels) > 0
    n_pos, n_neg = float(y.sum()), float((~y).sum())
    t = np.where(y, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))

    def nll(a: float, b: float) -> float:
        z = a * s + b
        return float(np.sum(np.logaddexp(0, z) - t * z))

    a, b = 0.0, float(np.log((n_pos + 1) / (n_neg + 1)))
    cur = nll(a, b)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(a * s + b, -35, 35)))
        g = np.array([np.sum((p - t) * s), np.sum(p - t)])
        w = p * (1 - p) + 1e-12
        h = np.array([[np.sum(w * s * s), np.sum(w * s)], [np.sum(w * s), np.sum(w)]])
        step = np.linalg.solve(h + 1e-9 * np.eye(2), g)
        lr = 1.0
        while lr > 1e-6 and nll(a - lr * step[0], b - lr * step[1]) > cur:
            lr /= 2  # halve until the likelihood improves: Newton alone can overshoot
        a, b = a - lr * step[0], b - lr * step[1]
        new = nll(a, b)
        if cur - new < 1e-10 * max(1.0, abs(cur)):
            break
        cur = new
    return Calibrator("platt", a=float(a), b=float(b))


def fit_isotonic(scores: np.ndarray, labels: np.ndarray) -> Calibrator:
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
    iso.fit(np.asarray(scores, np.float64), (np.asarray(labels) > 0).astype(np.float64))
    return Calibrator("isotonic", x=[float(v) for v in iso.X_thresholds_],
                      y=[float(v) for v in iso.y_thresholds_])


def fit_calibrator(method: str, scores: np.ndarray, labels: np.ndarray) -> Calibrator:
    if method == "platt":
        return fit_platt(scores, labels)
    if method == "isotonic":
        return fit_isotonic(scores, labels)
    raise ValueError(f"unknown calibration {method!r}; use platt or isotonic")


# -- model bundles (what a ranker artifact holds) -------------------------------------------

MODEL_FILE = "model_{name}.txt"
BUNDLE_FILE = "bundle.json"


@dataclass
class Bundle:
    """Boosters + calibrators + the feature contract, saved as LightGBM text + one JSON."""

    boosters: dict[str, Any]
    calibrators: dict[str, Calibrator]
    feature_names: list[str]
    categorical: list[str]
    meta: dict[str, Any]

    def save(self, folder) -> list[str]:
        from pathlib import Path

        folder = Path(folder)
        files = []
        for name, booster in self.boosters.items():
            if booster.feature_name() != self.feature_names:
                raise ValueError(f"model {name!r} was trained on other features than the bundle's")
            fn = MODEL_FILE.format(name=name)
            booster.save_model(str(folder / fn))
            files.append(fn)
        doc = {"models": sorted(self.boosters),
               "calibrators": {k: json.loads(c.to_json()) for k, c in self.calibrators.items()},
               "feature_names": self.feature_names, "categorical": self.categorical,
               "meta": self.meta}
        (folder / BUNDLE_FILE).write_text(json.dumps(doc, indent=1, default=str), encoding="utf-8")
        return files + [BUNDLE_FILE]

    @classmethod
    def load(cls, art) -> "Bundle":
        """Load from an `Artifact` (its manifest already verified the files' sha256)."""
        import lightgbm as lgb

        doc = json.loads(art.file(BUNDLE_FILE).read_text(encoding="utf-8"))
        boosters = {m: lgb.Booster(model_file=str(art.file(MODEL_FILE.format(name=m))))
                    for m in doc["models"]}
        cals = {k: Calibrator(**v) for k, v in doc["calibrators"].items()}
        return cls(boosters, cals, doc["feature_names"], doc["categorical"], doc["meta"])
