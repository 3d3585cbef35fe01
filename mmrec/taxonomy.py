"""The attribute vocabulary: fields, canonical values, synonyms, and the slot of each category.

Everything downstream (catalog ingest, SFT labels, the tagger's JSON, outfit rules, the
benchmark's must/must-not rules) speaks in the canonical values defined here, so that "T-Shirt",
"tee" and "Tshirts" are one thing. The vocabulary itself is data: ``mmrec/data/taxonomy.yaml``.

Matching is forgiving in a fixed, documented way (see :func:`normalize`): case, spacing,
``-``/``_``/``/``/``.``/apostrophes are ignored, words may be written together ("tshirt" ==
"t shirt"), and a trailing plural ``s``/``es`` is tried when nothing else matches. Anything
else must be listed as a synonym. Pure Python + pyyaml: cheap to import anywhere.

Each value may also carry ``zh``: Simplified Chinese names (display name first) for the query
parser and Chinese explanations; they are kept apart from the English matching above.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mmrec.errors import ConfigError, InputError

FIELDS = (
    "category",
    "slot",
    "gender",
    "colour",
    "pattern",
    "material",
    "fit",
    "sleeve",
    "neckline",
    "season",
    "usage",
)
SLOTS = ("top", "bottom", "one-piece", "outerwear", "shoes", "bag", "accessory", "other")
COLOUR_FAMILIES = (
    "black", "white", "grey", "blue", "navy", "red", "pink", "purple",
    "green", "yellow", "orange", "brown", "beige", "metallic", "multi",
)  # fmt: skip
TONES = ("dark", "mid", "light")
DEFAULT_PATH = Path(__file__).resolve().parent / "data" / "taxonomy.yaml"

# Per-field extra keys a value may carry (beyond `synonyms` and `fashionpedia`); all required.
_EXTRA_KEYS: dict[str, tuple[str, ...]] = {
    "category": ("slot",),
    "colour": ("family", "tone", "neutral"),
}
_COMMON_KEYS = ("synonyms", "fashionpedia", "zh")

_DROP = re.compile(r"['\u2019`.]")  # men's -> mens, u.s. -> us, dk.grey -> dkgrey
_SEP = re.compile(r"[\W_]+")  # '-', '_', '/', '&', ',' and any other punctuation -> space


def normalize(text: str) -> str:
    """Matching key of a label: NFKC, casefold, '&' -> 'and', punctuation -> space, one space."""
    text = unicodedata.normalize("NFKC", text).casefold().replace("&", " and ")
    return " ".join(_SEP.sub(" ", _DROP.sub("", text)).split())


def zh_key(term: str) -> str:
    """Lookup key of a Chinese term: NFKC (full-width letters and digits), casefold, no spaces.

    Chinese is written without spaces, so "T 恤" and "t恤" are one term; unlike :func:`normalize`
    punctuation is kept, because no Chinese term contains any.
    """
    return "".join(unicodedata.normalize("NFKC", term).casefold().split())


def _compact(key: str) -> str:
    return key.replace(" ", "")


@dataclass(frozen=True)
class ValueSpec:
    """One canonical value of a field and what the YAML says about it."""

    name: str
    synonyms: tuple[str, ...] = ()
    fashionpedia: str | None = None
    slot: str | None = None  # category only
    family: str | None = None  # colour only
    tone: str | None = None  # colour only
    neutral: bool | None = None  # colour only
    # Simplified Chinese names, display name first; read by the query parser only, so that the
    # English matcher (canonical/terms) behaves exactly as before they existed.
    zh: tuple[str, ...] = ()


# libyaml's parser when present (the pure-Python one takes ~8x longer on this file).
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """Safe loader that refuses duplicate mapping keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False):
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(
                f"duplicate key {key!r} at line {key_node.start_mark.line + 1}; "
                "each value may be listed once (merge the entries)"
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)


class Taxonomy:
    """Validated vocabulary with forgiving lookup. Build with :meth:`load` or :func:`default_taxonomy`."""

    def __init__(self, specs: dict[str, dict[str, ValueSpec]], descriptions: dict[str, str]):
        self._specs = specs
        self._descriptions = descriptions
        self.fields: tuple[str, ...] = tuple(specs)
        self._exact: dict[str, dict[str, str]] = {}
        self._compact: dict[str, dict[str, str]] = {}
        self._check()
        self._zh_terms = self._index_zh()

    # ----------------------------------------------------------------------------- loading
    @classmethod
    def load(cls, path: str | Path | None = None) -> "Taxonomy":
        """Read and validate a taxonomy YAML (default: the packaged ``mmrec/data/taxonomy.yaml``).

        Raises:
            ConfigError: the file is missing or unparsable, or a field/value is invalid; the
                message names the field and value and says what would be valid.
        """
        path = Path(path) if path is not None else DEFAULT_PATH
        try:
            raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
        except OSError as e:
            raise ConfigError(f"cannot read taxonomy file {path}: {e}") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"taxonomy file {path} is not valid YAML: {e}") from e
        except ConfigError as e:
            raise ConfigError(f"taxonomy file {path}: {e}") from e
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: Any, *, source: str = "<dict>") -> "Taxonomy":
        """Build from the parsed YAML structure (``{"fields": {field: {...}}}``)."""
        if not isinstance(raw, dict) or not isinstance(raw.get("fields"), dict):
            raise ConfigError(f"{source}: expected a mapping with a 'fields' mapping at the top")
        unknown_top = set(raw) - {"version", "fields"}
        if unknown_top:
            raise ConfigError(
                f"{source}: unknown top-level keys {sorted(unknown_top)}; valid: fields, version"
            )
        fields = raw["fields"]
        unknown = [f for f in fields if f not in FIELDS]
        missing = [f for f in FIELDS if f not in fields]
        if unknown or missing:
            raise ConfigError(
                f"{source}: taxonomy fields must be exactly {list(FIELDS)}; "
                f"unknown: {unknown}, missing: {missing}"
            )
        specs: dict[str, dict[str, ValueSpec]] = {}
        descriptions: dict[str, str] = {}
        for field in FIELDS:
            body = fields[field]
            if not isinstance(body, dict) or not isinstance(body.get("values"), dict) or not body["values"]:
                raise ConfigError(f"{source}: field {field!r} needs a non-empty 'values' mapping")
            extra = set(body) - {"description", "values"}
            if extra:
                raise ConfigError(
                    f"{source}: field {field!r} has unknown keys {sorted(extra)}; "
                    "valid: description, values"
                )
            descriptions[field] = str(body.get("description") or "")
            specs[field] = {
                name: _parse_value(field, name, entry, source) for name, entry in body["values"].items()
            }
        return cls(specs, descriptions)

    def _check(self) -> None:
        """Consistency checks over the whole vocabulary; builds the lookup tables."""
        slots = set(self._specs.get("slot", {}))
        if slots != set(SLOTS):
            raise ConfigError(f"field 'slot' must have exactly the values {list(SLOTS)}, got {sorted(slots)}")
        for field, values in self._specs.items():
            exact: dict[str, str] = {}
            compact: dict[str, str] = {}
            for name, spec in values.items():
                for term in (name, *spec.synonyms):
                    key = normalize(term)
                    if not key:
                        raise ConfigError(f"field {field!r}, value {name!r}: empty synonym {term!r}")
                    if key in exact:
                        what = "repeats" if exact[key] == name else f"already names {exact[key]!r}"
                        raise ConfigError(
                            f"field {field!r}: {term!r} (for {name!r}) {what}; "
                            "a term may map to one value only, once"
                        )
                    exact[key] = name
                    other = compact.setdefault(_compact(key), name)
                    if other != name:
                        raise ConfigError(
                            f"field {field!r}: {term!r} (for {name!r}) matches {other!r} when "
                            "spaces are ignored; rename one of them"
                        )
            self._exact[field] = exact
            self._compact[field] = compact

    def _index_zh(self) -> dict[str, tuple[tuple[str, str], ...]]:
        """zh term key -> (field, value) pairs. A term may name several values (the collision
        tests in tests/test_taxonomy.py allow-list the deliberate ones); a repeat within one
        value is refused."""
        index: dict[str, list[tuple[str, str]]] = {}
        for field, values in self._specs.items():
            for name, spec in values.items():
                for term in spec.zh:
                    pairs = index.setdefault(zh_key(term), [])
                    if (field, name) in pairs:
                        raise ConfigError(f"field {field!r}, value {name!r}: zh term {term!r} is listed twice")
                    pairs.append((field, name))
        return {k: tuple(v) for k, v in index.items()}

    # ----------------------------------------------------------------------------- lookup
    def _field(self, field: str) -> dict[str, ValueSpec]:
        try:
            return self._specs[field]
        except KeyError:
            raise InputError(f"unknown taxonomy field {field!r}; valid: {list(self.fields)}") from None

    def values(self, field: str) -> list[str]:
        """Canonical values of ``field`` in YAML order."""
        return list(self._field(field))

    def canonical(self, field: str, raw: str | None) -> str | None:
        """Canonical value for a raw label (value or synonym), or None if empty or unknown."""
        self._field(field)
        if raw is None or (isinstance(raw, float) and math.isnan(raw)):
            return None
        if not isinstance(raw, str):
            raise InputError(f"{field} label must be a string, got {type(raw).__name__} {raw!r}")
        key = normalize(raw)
        if not key:
            return None
        hit = self._exact[field].get(key)
        if hit is not None:
            return hit
        compact = self._compact[field]
        ckey = _compact(key)
        # Plural fallback only after exact forms fail: "tshirt" <-> "tshirts", "clutch" <-> "clutches".
        for cand in (ckey, ckey + "s", ckey + "es", ckey[:-1] if ckey.endswith("s") else None,
                     ckey[:-2] if ckey.endswith("es") else None):  # fmt: skip
            if cand and cand in compact:
                return compact[cand]
        return None

    def is_valid(self, field: str, value: str | None) -> bool:
        """True if ``value`` is exactly a canonical value of ``field`` (synonyms are not)."""
        return isinstance(value, str) and value in self._field(field)

    def spec(self, field: str, value: str | None) -> ValueSpec | None:
        """The YAML entry of a (raw or canonical) value, or None if unknown."""
        name = self.canonical(field, value)
        return None if name is None else self._specs[field][name]

    def terms(self, field: str) -> list[tuple[str, str]]:
        """Every (surface term, canonical value) pair of a field: values and their synonyms."""
        return [(term, name) for name, s in self._field(field).items() for term in (name, *s.synonyms)]

    def slot_of(self, category: str | None) -> str:
        """Outfit slot of a category (canonical or raw); "other" when unknown."""
        spec = self.spec("category", category)
        return spec.slot if spec is not None and spec.slot else "other"

    def colour_family(self, colour: str | None) -> str | None:
        spec = self.spec("colour", colour)
        return None if spec is None else spec.family

    def colour_families(self, colours) -> dict[str, str | None]:
        """Colour -> its family, for the tagger's grouped colour choice and loss."""
        return {c: self.colour_family(c) for c in colours}

    def colour_tone(self, colour: str | None) -> str | None:
        spec = self.spec("colour", colour)
        return None if spec is None else spec.tone

    def is_neutral(self, colour: str | None) -> bool:
        spec = self.spec("colour", colour)
        return bool(spec is not None and spec.neutral)

    def fashionpedia(self, field: str, value: str | None) -> str | None:
        """Fashionpedia category/attribute name with the same meaning, where one exists."""
        spec = self.spec(field, value)
        return None if spec is None else spec.fashionpedia

    def zh_name(self, field: str, value: str | None) -> str | None:
        """Chinese display name of a (raw or canonical) value; None if unknown or it has none."""
        spec = self.spec(field, value)
        return spec.zh[0] if spec is not None and spec.zh else None

    def zh_synonyms(self, field: str, value: str | None) -> tuple[str, ...]:
        """Every Chinese term of a (raw or canonical) value, display name first."""
        spec = self.spec(field, value)
        return () if spec is None else spec.zh

    def zh_terms(self) -> dict[str, tuple[tuple[str, str], ...]]:
        """Every Chinese term (as :func:`zh_key` writes it) -> the (field, value) pairs it names."""
        return dict(self._zh_terms)

    def zh_lookup(self, term: str) -> tuple[tuple[str, str], ...]:
        """(field, value) pairs a Chinese term names, () when it names none."""
        return self._zh_terms.get(zh_key(term), ())

    def describe(self) -> dict[str, dict[str, Any]]:
        """Field -> {"description", "values", "n"}; for docs and the CLI."""
        return {
            f: {"description": self._descriptions[f], "values": list(v), "n": len(v)}
            for f, v in self._specs.items()
        }

    def __repr__(self) -> str:
        sizes = ", ".join(f"{f}={len(v)}" for f, v in self._specs.items())
        return f"Taxonomy({sizes})"


def _parse_value(field: str, name: Any, entry: Any, source: str) -> ValueSpec:
    where = f"{source}: field {field!r}, value {name!r}"
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: values must be non-empty strings")
    tidy = " ".join(name.lower().split())
    if name != tidy:
        raise ConfigError(f"{where}: canonical values are lowercase with single spaces, e.g. {tidy!r}")
    entry = {} if entry is None else entry
    allowed = _COMMON_KEYS + _EXTRA_KEYS.get(field, ())
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping with keys from {list(allowed)}, got {entry!r}")
    unknown = set(entry) - set(allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; valid: {list(allowed)}")
    missing = [k for k in _EXTRA_KEYS.get(field, ()) if k not in entry]
    if missing:
        raise ConfigError(f"{where}: missing required keys {missing}")
    synonyms = entry.get("synonyms") or []
    if not isinstance(synonyms, list) or not all(isinstance(s, str) for s in synonyms):
        raise ConfigError(f"{where}: 'synonyms' must be a list of strings, got {synonyms!r}")
    zh = entry.get("zh") or []
    if not isinstance(zh, list):
        raise ConfigError(f"{where}: 'zh' must be a list of Chinese terms, got {zh!r}")
    for term in zh:
        if not isinstance(term, str) or not zh_key(term):
            raise ConfigError(f"{where}: 'zh' entries must be non-empty strings, got {term!r} in {zh!r}")
    fp = entry.get("fashionpedia")
    if fp is not None and not isinstance(fp, str):
        raise ConfigError(f"{where}: 'fashionpedia' must be a string, got {fp!r}")
    kw: dict[str, Any] = {}
    if field == "category":
        if entry["slot"] not in SLOTS:
            raise ConfigError(f"{where}: slot {entry['slot']!r} is not one of {list(SLOTS)}")
        kw["slot"] = entry["slot"]
    if field == "colour":
        if entry["family"] not in COLOUR_FAMILIES:
            raise ConfigError(f"{where}: family {entry['family']!r} is not one of {list(COLOUR_FAMILIES)}")
        if entry["tone"] not in TONES:
            raise ConfigError(f"{where}: tone {entry['tone']!r} is not one of {list(TONES)}")
        if not isinstance(entry["neutral"], bool):
            raise ConfigError(f"{where}: neutral must be true or false, got {entry['neutral']!r}")
        kw.update(family=entry["family"], tone=entry["tone"], neutral=entry["neutral"])
    return ValueSpec(name=name, synonyms=tuple(synonyms), fashionpedia=fp, zh=tuple(zh), **kw)


@functools.lru_cache(maxsize=1)
def default_taxonomy() -> Taxonomy:
    """The packaged taxonomy, loaded once per process."""
    return Taxonomy.load()
