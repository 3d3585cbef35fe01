"""Scenes ("office", "beach holiday", ...): slot templates, hard rules and soft guidance.

One source of truth, ``configs/scenes.yaml``, read by the composer (to build outfits), the
explainer (to cite the rules an outfit satisfies) and the benchmark (to judge outfits on
catalog truth). Every field, value, slot and category in the file is checked against the
taxonomy at load, so a typo fails at start-up with the scene and rule named.

Rule semantics on an item (a mapping with the items-table columns):
- ``must``: the item's value of ``field`` is one of ``values``. An unknown (null) value fails:
  the catalog cannot show that the rule holds.
- ``must_not``: the item's value is not one of ``values``. Null passes: nothing shows a breach.
- each rule may be limited to some slots; a scene's slot spec lists the categories allowed there.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml
from pydantic import Field, ValidationError, field_validator

from mmrec.config import DEFAULT_CONFIG_DIR, StrictModel
from mmrec.errors import ConfigError, InputError
from mmrec.taxonomy import COLOUR_FAMILIES, SLOTS, Taxonomy, default_taxonomy, normalize

DEFAULT_SCENES_PATH = DEFAULT_CONFIG_DIR / "scenes.yaml"
OUTFIT_SLOTS = tuple(s for s in SLOTS if s != "other")
# Adult and children's ranges never mix in one outfit; unisex goes with anything.
GENDER_GROUPS = {"men": "men", "women": "women", "boys": "boys", "girls": "girls"}


class Rule(StrictModel):
    """One hard rule: ``field`` must (not) take one of ``values``, optionally only in ``slots``."""

    field: str
    values: list[str] = Field(min_length=1)
    slots: list[str] | None = None
    reason: str = Field(min_length=3, max_length=80)  # cited by explanations, e.g. "no sportswear"

    def applies_to(self, slot: str | None) -> bool:
        return self.slots is None or slot in self.slots


class SlotSpec(StrictModel):
    """Categories allowed in one slot of a scene (the scene's dress code for that slot)."""

    categories: list[str] = Field(min_length=1)


class ColourGuide(StrictModel):
    """Soft colour guidance: preferred / avoided colour families and how many accents suit."""

    prefer_families: list[str] = []
    avoid_families: list[str] = []
    max_accents: int = Field(2, ge=0, le=5)  # non-neutral colour families per outfit


class Scene(StrictModel):
    name: str
    label: str
    label_zh: str | None = Field(None, max_length=20, description="Chinese label (explanations in zh)")
    aliases: list[str] = []
    usages: list[str] = Field(min_length=1)  # occasion values that suit the scene, best first
    seasons: list[str] = Field(min_length=1)
    query: str = Field(min_length=3)  # text for recall's text route when the shopper types none
    templates: list[list[str]] = Field(min_length=1)
    # Templates used only when the shopper asks for an item of a slot the usual templates lack
    # ("navy blazer" at the office): the scene's outfits stay the same for everyone else.
    on_request: list[list[str]] = []
    slots: dict[str, SlotSpec]
    must: list[Rule] = []
    must_not: list[Rule] = []
    colours: ColourGuide = ColourGuide()

    @field_validator("templates", "on_request")
    @classmethod
    def _templates_unique_slots(cls, v: list[list[str]]) -> list[list[str]]:
        for t in v:
            if len(t) < 2 or len(set(t)) != len(t):
                raise ValueError(f"template {t} must list at least two distinct slots")
        return v

    # -- rules on catalog truth ---------------------------------------------------------
    def slot_categories(self, slot: str) -> list[str]:
        spec = self.slots.get(slot)
        return list(spec.categories) if spec else []

    def all_templates(self) -> list[list[str]]:
        """The usual templates and the on-request ones (what an outfit of this scene may be)."""
        return [*self.templates, *self.on_request]

    def with_request(self, slot: str | None) -> "Scene":
        """This scene for a shopper who asked for an item of ``slot``: the on-request templates
        with that slot join the usual ones (the same scene when it has none or needs none)."""
        if slot is None or slot in self.template_slots():
            return self
        extra = [t for t in self.on_request if slot in t]
        return self.model_copy(update={"templates": [*self.templates, *extra]}) if extra else self

    def all_slots(self) -> list[str]:
        """Every slot of `all_templates`, in first-seen order."""
        return list(dict.fromkeys(s for t in self.all_templates() for s in t))

    def template_slots(self) -> list[str]:
        """Every slot used by some template, in first-seen order."""
        seen: dict[str, None] = {}
        for t in self.templates:
            for s in t:
                seen.setdefault(s, None)
        return list(seen)

    def item_violations(self, item: Mapping[str, Any], slot: str | None = None) -> list[str]:
        """Why ``item`` may not appear in this scene (empty list: it may)."""
        slot = slot or item.get("slot")
        out: list[str] = []
        allowed = self.slot_categories(slot) if slot else []
        if not allowed:
            out.append(f"slot {slot!r} is not part of scene {self.name!r}")
        elif item.get("category") not in allowed:
            out.append(f"category {item.get('category')!r} is not allowed in {slot} for "
                       f"{self.name} (allowed: {', '.join(allowed)})")
        for r in self.must:
            if r.applies_to(slot) and item.get(r.field) not in r.values:
                out.append(f"must: {r.field} in {r.values} ({r.reason}); got {item.get(r.field)!r}")
        for r in self.must_not:
            if r.applies_to(slot) and item.get(r.field) in r.values:
                out.append(f"must not: {r.field} {item.get(r.field)!r} ({r.reason})")
        return out

    def satisfied_rules(self, item: Mapping[str, Any], slot: str | None = None) -> list[Rule]:
        """The rules that apply to ``item``'s slot and hold for it (cited by explanations)."""
        slot = slot or item.get("slot")
        held = [r for r in self.must if r.applies_to(slot) and item.get(r.field) in r.values]
        # a must-not rule is only worth citing when the catalog knows the value
        held += [r for r in self.must_not if r.applies_to(slot) and item.get(r.field) is not None
                 and item.get(r.field) not in r.values]
        return held

    def outfit_violations(self, items: list[Mapping[str, Any]]) -> list[str]:
        """Hard-rule breaches of a whole outfit: template, every item, gender consistency."""
        out: list[str] = []
        slots = sorted(str(it.get("slot")) for it in items)
        if not any(sorted(t) == slots for t in self.all_templates()):
            out.append(f"slots {slots} match no template of {self.name}: {self.all_templates()}")
        for it in items:
            out += [f"{it.get('item_id')}: {v}" for v in self.item_violations(it)]
        if not genders_compatible(it.get("gender") for it in items):
            out.append("mixed genders: " + ", ".join(sorted({str(it.get('gender')) for it in items})))
        return out


def genders_compatible(genders: Iterable[str | None]) -> bool:
    """True when at most one of men/women/boys/girls occurs (unisex and unknown go anywhere)."""
    groups = {GENDER_GROUPS[g] for g in genders if g in GENDER_GROUPS}
    return len(groups) <= 1


class SceneBook:
    """All scenes of a file, validated against a taxonomy; ``version`` is the file's content hash."""

    def __init__(self, scenes: dict[str, Scene], version: str, path: Path | None = None):
        self.scenes = scenes
        self.version = version
        self.path = path
        self._lookup: dict[str, str] = {}
        for name, sc in scenes.items():
            for term in (name, sc.label, *sc.aliases):
                key = _key(term)
                if self._lookup.setdefault(key, name) != name:
                    raise ConfigError(f"scene name or alias {term!r} is used by both "
                                      f"{self._lookup[key]!r} and {name!r}")

    @classmethod
    def load(cls, path: str | Path | None = None, taxonomy: Taxonomy | None = None) -> "SceneBook":
        """Read and validate a scenes YAML (default ``configs/scenes.yaml``).

        Raises:
            ConfigError: unreadable file, unknown key, or a field/value/slot/category that the
                taxonomy does not know; the message names the scene and the bad value.
        """
        path = Path(path) if path is not None else DEFAULT_SCENES_PATH
        try:
            text = path.read_text(encoding="utf-8")
            raw = yaml.safe_load(text)
        except OSError as e:
            raise ConfigError(f"cannot read scenes file {path}: {e}") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"scenes file {path} is not valid YAML: {e}") from e
        version = hashlib.sha256(text.encode()).hexdigest()[:12]
        return cls.from_dict(raw, taxonomy=taxonomy, version=version, source=str(path), path=path)

    @classmethod
    def from_dict(cls, raw: Any, *, taxonomy: Taxonomy | None = None, version: str = "inline",
                  source: str = "<dict>", path: Path | None = None) -> "SceneBook":
        tax = taxonomy or default_taxonomy()
        if not isinstance(raw, dict) or not isinstance(raw.get("scenes"), dict) or not raw["scenes"]:
            raise ConfigError(f"{source}: expected a mapping with a non-empty 'scenes' mapping")
        unknown = set(raw) - {"version", "scenes"}
        if unknown:
            raise ConfigError(f"{source}: unknown top-level keys {sorted(unknown)}; valid: version, scenes")
        scenes: dict[str, Scene] = {}
        for name, body in raw["scenes"].items():
            if not isinstance(body, dict):
                raise ConfigError(f"{source}: scene {name!r} must be a mapping")
            try:
                scene = Scene.model_validate({"name": name, **body})
            except ValidationError as e:
                errs = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
                raise ConfigError(f"{source}: scene {name!r}: {errs}") from e
            _check_scene(scene, tax, f"{source}: scene {name!r}")
            scenes[name] = scene
        return cls(scenes, version, path)

    def names(self) -> list[str]:
        return list(self.scenes)

    def get(self, name: str) -> Scene:
        """Scene by name, label or alias (case, spaces, '-', '/' and '_' ignored)."""
        hit = self._lookup.get(_key(name))
        if hit is None:
            raise InputError(f"unknown scene {name!r}; choose one of {self.names()}")
        return self.scenes[hit]


def _key(term: str) -> str:
    return normalize(term).replace(" ", "_")


def _check_scene(sc: Scene, tax: Taxonomy, where: str) -> None:
    def check_values(field: str, values: Iterable[str], what: str) -> None:
        bad = [v for v in values if not tax.is_valid(field, v)]
        if bad:
            raise ConfigError(f"{where}: {what}: {bad} not canonical {field} values; "
                              f"valid: {tax.values(field)}")

    check_values("usage", sc.usages, "usages")
    check_values("season", sc.seasons, "seasons")
    for slot, spec in sc.slots.items():
        if slot not in OUTFIT_SLOTS:
            raise ConfigError(f"{where}: slot {slot!r} is not one of {list(OUTFIT_SLOTS)}")
        check_values("category", spec.categories, f"slots.{slot}")
        wrong = [c for c in spec.categories if tax.slot_of(c) != slot]
        if wrong:
            raise ConfigError(f"{where}: slots.{slot}: categories {wrong} belong to other slots "
                              f"({', '.join(f'{c}->{tax.slot_of(c)}' for c in wrong)})")
    for t in sc.all_templates():
        missing = [s for s in t if s not in sc.slots]
        if missing:
            raise ConfigError(f"{where}: template {t} uses slots {missing} with no 'slots' entry")
    for kind, rules in (("must", sc.must), ("must_not", sc.must_not)):
        for i, r in enumerate(rules):
            if r.field not in tax.fields:
                raise ConfigError(f"{where}: {kind}[{i}]: unknown field {r.field!r}; "
                                  f"valid: {list(tax.fields)}")
            check_values(r.field, r.values, f"{kind}[{i}]")
            if r.slots is not None:
                bad = [s for s in r.slots if s not in sc.slots]
                if bad:
                    raise ConfigError(f"{where}: {kind}[{i}]: slots {bad} are not slots of the "
                                      f"scene {sorted(sc.slots)}")
    for fam in (*sc.colours.prefer_families, *sc.colours.avoid_families):
        if fam not in COLOUR_FAMILIES:
            raise ConfigError(f"{where}: colour family {fam!r} is not one of {list(COLOUR_FAMILIES)}")
