"""Outfits: scenes and their rules, compatibility, composition by beam search, explanations."""
