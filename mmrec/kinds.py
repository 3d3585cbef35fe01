"""Artifact kinds: the name of every `artifacts/<kind>/` folder, each defined once.

A kind name is a contract between the stage that writes an artifact and every stage, service
and tool that reads it (and the `CURRENT` pointer the server watches); a typo in one copy of
the string fails only at run time, as "no such artifact". So writers and readers import the
name from here, and this module imports nothing, so that any module may.
"""

from __future__ import annotations

# -- catalog ---------------------------------------------------------------------------------
ITEMS = "items"                      # mmrec.catalog.ingest: the typed, validated catalog

# -- attribute tagger (Qwen-VL) --------------------------------------------------------------
SFT_DATASET = "sft_dataset"          # mmrec.attributes.dataset.build: ChatML JSONL + reports
VLM_BASE = "vlm_base"                # the mini base stage (image -> title), what a LoRA adapts
VLM = "vlm"                          # the tagger: a LoRA adapter or a merged model
ATTRIBUTE_PREDICTIONS = "attribute_predictions"  # the tagger's readings of the catalog
SFT_EVAL = "sft_eval"                # mmrec.attributes.evaluate
SFT_CNN = "sft_cnn"                  # mmrec.attributes.cnn: the image-only baseline

# -- embeddings and recall -------------------------------------------------------------------
ENCODER = "encoder"                  # mmrec.embed.train: the CLIP encoder
VECTORS = "vectors"                  # mmrec.embed.catalog: one vector per catalog image
EMBED_EVAL = "embed_eval"            # mmrec.embed.evaluate
INDEX = "index"                      # mmrec.recall.build: FAISS index + id map + filters
PHOTO_REFS = "photo_refs"            # mmrec.embed.photo_refs: labelled phone photos that vote on a slot
INDEX_LATENCY = "index_latency"      # mmrec.recall.ann_latency (`mmrec index latency`)

# -- ranking ---------------------------------------------------------------------------------
INTERACTIONS_RTR = "interactions_rtr"  # mmrec.rank.interactions: real Rent the Runway logs
INTERACTIONS_HM = "interactions_hm"    # real H&M transactions
INTERACTIONS_SIM = "interactions_sim"  # mmrec.rank.simulator: SIMULATED Myntra shoppers
RANKER = "ranker"                    # mmrec.rank.myntra_train: the model serving loads
RANKER_RTR = "ranker_rtr"            # offline evaluation models on real data
RANKER_HM = "ranker_hm"
RANK_EVAL = "rank_eval"              # mmrec.rank.evaluate
RANK_LATENCY = "rank_latency"        # mmrec.rank.latency (`mmrec rank latency`)

# -- outfits, benchmark, serving ---------------------------------------------------------------
OUTFIT_PRIORS = "outfit_priors"      # mmrec.outfit.priors: Polyvore co-occurrence priors
SLOT_CALIBRATION = "slot_calibration"  # mmrec.bench.slot_calibration: photo slot confidence
BENCH_EVAL = "bench_eval"            # mmrec.bench.runner: a published benchmark run
SERVE_LOADTEST = "serve_loadtest"    # `mmrec serve loadtest`
# Not a versioned artifact: the live feedback store (one SQLite file, mmrec.feedback) lives in
# this folder of the artifact root unless serve.yaml's feedback.path puts it elsewhere.
FEEDBACK = "feedback"
FEEDBACK_LOADTEST = "feedback_loadtest"  # `mmrec feedback loadtest`
