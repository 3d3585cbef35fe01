"""What the `Recommender` needs of each injected component, as protocols.

The recommender is built from whatever artifacts exist, and tests inject small in-process
stand-ins of the same shape; these protocols name that shape so that a type checker (and a
reader) sees what each component must offer, instead of ``Any``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, Sequence

if TYPE_CHECKING:  # annotations only: importing recall/rank pulls in faiss and lightgbm
    from mmrec.rank.ranker import RankContext
    from mmrec.rank.users import UserProfile
    from mmrec.recall.types import Candidate, RecallQuery


class CandidateRecall(Protocol):
    """Multi-route candidate recall over one index version (`mmrec.recall.service.Recall`)."""

    versions: dict[str, str]

    def search(self, query: "RecallQuery") -> "list[Candidate]": ...


class PropensityRanker(Protocol):
    """Scores candidates for one shopper in one context (`mmrec.rank.ranker.Ranker`)."""

    version: str

    def score(self, user: "UserProfile | None", context: "RankContext", item_ids: list[str],
              recall: dict[str, dict[str, Any]] | None = None) -> Sequence[float]: ...


class UserDirectory(Protocol):
    """Shopper profiles and histories (`mmrec.rank.users.UserStore`)."""

    def get(self, user_id: str) -> "UserProfile | None": ...

    def history(self, user_id: str, limit: int = 50) -> list[dict]: ...

    def ids(self) -> list[str]: ...
