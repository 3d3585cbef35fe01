"""Outfit recommendation over one catalog version: the `Recommender` facade and its steps.

Import the facade from here; photo types live in `mmrec.outfit.photo`.
"""

from mmrec.recommend.config import RecommenderConfig
from mmrec.recommend.recommender import SIMULATED_USERS_NOTE, Recommender

__all__ = ["Recommender", "RecommenderConfig", "SIMULATED_USERS_NOTE"]
