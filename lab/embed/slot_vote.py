"""Who should vote on a phone photo's slot: catalog look-alikes, labelled reference photos, or both.

For the labelled photos of one photographer split (probes excluded), the majority slot ("other"
does not vote) of:

  catalog   the 10 nearest catalog products on the image (`PhotoAnchoring` without references)
  refs      the 10 nearest labelled phone photos of the TRAIN photographers (`PhotoRefs`)
  both      the 20 together (what the served system counts when reference photos exist)

Measured 2026-12-07 with the demo encoder (`encoder/20261207T122848526Z-32e8e1`) on val (151):
catalog 0.490, refs 0.603, both 0.570 (docs/benchmark.md "Perception on real photos, second
pass"). Choose on ``--split val``.

What kiosk answers would add (`mmrec embed photo-refs --answers`), simulated on the split's own
labelled photos, each read leaving itself out:

  refs+same    the reference photos plus the other photos of the same photographer (a store's
               kiosk: same camera, light and backdrop), as if answered earlier
  refs+others  the reference photos plus the photos of every other photographer of the split

Measured 2026-12-07 (same encoder, val): refs 0.603, refs+same 0.609, refs+others 0.616: small
with this encoder (docs/serving.md "Kiosk photo answers").

Usage (repo root):
  .venv/bin/python -m lab.embed.slot_vote --artifacts artifacts --split val
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np

from lab.embed.photo_probe import catalog_pool, labelled_photos, open_encoder, photo_args, write_result

K = 10


def majority(slots) -> str | None:
    votes = Counter(s for s in slots if s != "other")
    return votes.most_common(1)[0][0] if votes else None


def vote_accuracy(photo_vecs: np.ndarray, truth: list[str], pool_vecs: np.ndarray, pool_slots: np.ndarray,
                  ref_vecs: np.ndarray, ref_slots: np.ndarray, k: int = K) -> dict[str, float]:
    """Accuracy of the majority slot of each electorate."""
    cat = np.argsort(-(photo_vecs @ pool_vecs.T), axis=1)[:, :k]
    ref = np.argsort(-(photo_vecs @ ref_vecs.T), axis=1)[:, :k]
    out = {"catalog": [], "refs": [], "both": []}
    for i, t in enumerate(truth):
        out["catalog"].append(majority(pool_slots[cat[i]]) == t)
        out["refs"].append(majority(ref_slots[ref[i]]) == t)
        out["both"].append(majority([*pool_slots[cat[i]], *ref_slots[ref[i]]]) == t)
    return {name: float(np.mean(v)) for name, v in out.items()}


def answers_accuracy(photo_vecs: np.ndarray, truth: list[str], senders: list[str], ref_vecs: np.ndarray,
                     ref_slots: np.ndarray, k: int = K) -> dict[str, float]:
    """Reference-photo vote with the split's other photos added as answered ones (leave one out):
    of the same photographer, or of every other photographer."""
    truth_a, senders_a = np.asarray(truth), np.asarray(senders)
    out = {"refs+same": [], "refs+others": []}
    for i, t in enumerate(truth):
        others = np.arange(len(truth)) != i
        for name, pick in (("refs+same", others & (senders_a == senders_a[i])),
                           ("refs+others", senders_a != senders_a[i])):
            vecs = np.vstack([ref_vecs, photo_vecs[pick]])
            slots = np.concatenate([ref_slots, truth_a[pick]])
            out[name].append(majority(slots[np.argsort(-(vecs @ photo_vecs[i]))[:k]]) == t)
    return {name: float(np.mean(v)) for name, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    photo_args(p)
    p.add_argument("--encoder", default=None, help="encoder version (default: CURRENT)")
    args = p.parse_args(argv)

    from mmrec.images import load_image
    from mmrec.taxonomy import default_taxonomy

    t0 = time.perf_counter()
    store, enc_art, encoder = open_encoder(args)
    tax = default_taxonomy()
    _, pool_slots, pool_vecs = catalog_pool(store, encoder, None, None)
    refs = labelled_photos(args.data, "train", tax)
    ref_vecs = encoder.encode_images([load_image(r.uri) for r in refs])
    photos = labelled_photos(args.data, args.split, tax)
    vecs = encoder.encode_images([load_image(ph.uri) for ph in photos])
    out = {"encoder": enc_art.version, "split": args.split, "photos": len(photos), "references": len(refs),
           **vote_accuracy(vecs, [ph.slot for ph in photos], pool_vecs, np.asarray(pool_slots),
                           ref_vecs, np.asarray([r.slot for r in refs])),
           **answers_accuracy(vecs, [ph.slot for ph in photos], [str(ph.sender) for ph in photos],
                              ref_vecs, np.asarray([r.slot for r in refs])),
           "seconds": round(time.perf_counter() - t0, 1)}
    write_result(out, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
