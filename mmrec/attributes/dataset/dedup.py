"""De-duplication: exact (image sha256) and near-duplicate (perceptual hash) groups, look-alikes.

Exact duplicates are dropped (one representative kept: the best-labelled). Near-duplicates
(pHash within ``max_distance`` bits: re-encodes, resizes, tiny crops of one photo) are kept but
grouped, so that splitting can put a whole group on one side: a model evaluated on a photo it
trained on in another size would look better than it is. Look-alike clusters (same labels and
the same coarse luminance layout, e.g. hundreds of flat-lay black T-shirts) are capped later.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from mmrec.attributes.dataset.product import Fingerprint, Product

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image


def fingerprint(img: "Image.Image", sha256: str | None, *, hash_size: int = 16,
                path: str | None = None) -> Fingerprint:
    """Hashes of a decoded image; ``sha256`` of the encoded bytes is computed from ``path`` if absent."""
    import imagehash

    if sha256 is None:
        if path is None:
            raise ValueError("fingerprint needs the image's sha256 or its path")
        sha256 = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    bits = imagehash.phash(img, hash_size=hash_size).hash.flatten()
    padded = np.zeros(-(-bits.size // 64) * 64, dtype=np.uint8)
    padded[:bits.size] = bits
    words = tuple(int(w) for w in np.packbits(padded).view(">u8"))
    small = np.asarray(img.convert("L").resize((4, 4)), dtype=np.float32).flatten()
    layout = int(sum(1 << i for i, v in enumerate(small > small.mean()) if v))
    return Fingerprint(sha256, words, layout)


def drop_exact_duplicates(products: list["Product"]) -> tuple[list["Product"], int]:
    """Keep one product per image sha256; return kept, dropped count.

    The representative is a held-out (test) product if there is one, so that the test split
    stays the project-wide held-out set; then the best-labelled one, then the smallest id.
    """
    from mmrec.splits import split_of

    priority = {"test": 0, "val": 1, "train": 2}
    by_sha: dict[str, list[Product]] = defaultdict(list)
    for p in products:
        sha = p.fp.sha256 if p.fp is not None else p.image_sha256
        by_sha[sha or f"nosha:{p.item_id}"].append(p)
    kept = []
    for group in by_sha.values():
        group.sort(key=lambda p: (priority[split_of(p.item_id)], -p.n_labels(), len(p.item_id), p.item_id))
        kept.append(group[0])
    kept.sort(key=lambda p: (len(p.item_id), p.item_id))
    return kept, len(products) - len(kept)


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def near_duplicate_pairs(hashes: np.ndarray, max_distance: int) -> np.ndarray:
    """All pairs (i < j) whose Hamming distance is <= ``max_distance``; ``hashes`` is uint64 [n, words]."""
    n, words = hashes.shape
    chunk = max(16, int(16_000_000 // max(1, n * words)))  # ~128 MB of xor words per block
    out = []
    for start in range(0, n, chunk):
        block = hashes[start:start + chunk]
        # [b, n] distances: popcount of xor, summed over the words of each hash
        dist = np.bitwise_count(block[:, None, :] ^ hashes[None, :, :]).sum(axis=2)
        ii, jj = np.nonzero(dist <= max_distance)
        ii = ii + start
        keep = ii < jj
        out.append(np.stack([ii[keep], jj[keep]], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.int64)


def group_near_duplicates(products: Sequence["Product"], max_distance: int) -> dict[str, int]:
    """Set ``product.group`` (connected components of near-duplicate pairs); return stats."""
    if not products:
        return {"pairs": 0, "groups_with_duplicates": 0, "products_in_groups": 0, "largest_group": 0}
    if any(p.fp is None for p in products):
        raise ValueError("near-duplicate grouping needs image fingerprints (clean.decode_images: true)")
    hashes = np.array([p.fp.phash for p in products], dtype=np.uint64)
    pairs = near_duplicate_pairs(hashes, max_distance)
    uf = _UnionFind(len(products))
    for i, j in pairs:
        uf.union(int(i), int(j))
    for i, p in enumerate(products):
        p.group = uf.find(i)
    sizes = Counter(p.group for p in products)
    multi = [s for s in sizes.values() if s > 1]
    return {"pairs": int(len(pairs)), "groups_with_duplicates": len(multi),
            "products_in_groups": int(sum(multi)), "largest_group": int(max(sizes.values()))}


def lookalike_key(p: "Product", fields: Sequence[str]) -> tuple:
    layout = p.fp.layout if p.fp is not None else -1
    return (*[p.labels.get(f) for f in fields], layout)


def cap_lookalike_clusters(products: list["Product"], fields: Sequence[str], cap: int | None,
                           rng: np.random.Generator) -> tuple[list["Product"], dict[str, int]]:
    """Keep at most ``cap`` random products per look-alike cluster; return kept and stats."""
    clusters: dict[tuple, list[Product]] = defaultdict(list)
    for p in products:
        clusters[lookalike_key(p, fields)].append(p)
    sizes = sorted((len(v) for v in clusters.values()), reverse=True)
    stats = {"clusters": len(clusters), "largest_cluster": sizes[0] if sizes else 0,
             "clusters_over_cap": 0, "dropped": 0}
    if cap is None:
        return products, stats
    drop: set[str] = set()
    for members in clusters.values():
        if len(members) > cap:
            stats["clusters_over_cap"] += 1
            idx = rng.permutation(len(members))[cap:]
            drop.update(members[i].item_id for i in idx)
    stats["dropped"] = len(drop)
    return [p for p in products if p.item_id not in drop], stats
