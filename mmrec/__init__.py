"""mmrec: a multimodal fashion recommender (Qwen-VL attributes, CLIP recall, LightGBM ranking).

Importing `mmrec` is cheap on purpose: heavy libraries (torch, transformers, ray) are imported
by the submodules that need them, so `mmrec --help` and pure-logic code stay fast.
"""

__version__ = "0.1.0"
