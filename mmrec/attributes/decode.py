"""Decoding the tagger's JSON: constrained (always valid) or free (then parse-and-repair).

Constrained decoding walks a token-level automaton of the answer: the JSON skeleton
``{"category": "`` ... ``", "gender": "`` ... ``"}`` is forced token by token and each value is
chosen greedily from a trie of the field's taxonomy values (+ "unknown"), so every output is
valid JSON with valid values, whatever the weights. The probability the model gives the chosen
value path, renormalised over the allowed tokens, is the field's confidence.

This relies on the tokenizer splitting ``"`` from letters (byte-level BPE with GPT-2 or Qwen
pre-tokenisation does), so a value has the same tokens wherever it appears; `JsonGrammar`
checks that for every value and refuses a tokenizer that breaks it.

Views (test-time augmentation): a batch may hold ``views`` copies of each image stacked view by
view (rows ``[plain 0..n-1, mirrored 0..n-1]`` for two). Each choice is then made once per image
from the views' probabilities averaged over the allowed tokens, and every view of an image is
fed the same choice, so the answer is one answer per image (the first ``n`` rows are returned).

Choice rules: each value is the most probable allowed token (greedy). A caller may set another
rule on a field whose values are all one token (`JsonGrammar.set_choice`, the mini/tiny
tokenizers); every decoding method then applies it at that field's value, so they still agree.
The product sets none; experiments do (lab/sft/colour_family.py).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from mmrec.errors import ConfigError


# probabilities [rows, k] over a field's allowed tokens -> chosen index per row [rows]
ChoiceRule = Callable[[Any], Any]


@dataclass
class _Node:
    children: dict[int, "_Node"] = field(default_factory=dict)
    value: str | None = None  # set on nodes that end a complete value

    def depth(self) -> int:
        return 1 + max((c.depth() for c in self.children.values()), default=0)


class JsonGrammar:
    """The answer language: fixed field order, each value from a closed list."""

    def __init__(self, tokenizer, fields: Sequence[str], values: Mapping[str, Sequence[str]],
                 unknown: str = "unknown"):
        self.fields = list(fields)
        self.unknown = unknown
        self.eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
        enc = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
        keys = [json.dumps(f) for f in self.fields]
        pieces = ["{" + keys[0] + ': "'] + [f'", {k}: "' for k in keys[1:]] + ['"}']
        self.forced: list[list[int]] = [enc(p) for p in pieces]
        self.forced[-1] = self.forced[-1] + [self.eos_id]
        self.tries: list[_Node] = []
        bad: list[str] = []
        for i, f in enumerate(self.fields):
            root = _Node()
            for v in dict.fromkeys([*values.get(f, ()), unknown]):
                ids = enc(v)
                # the value must tokenise the same inside the JSON as alone
                if enc(pieces[i] + v + pieces[i + 1]) != enc(pieces[i]) + ids + enc(pieces[i + 1]):
                    bad.append(f"{f}={v!r}")
                    continue
                node = root
                for t in ids:
                    node = node.children.setdefault(t, _Node())
                node.value = v
            self.tries.append(root)
        if bad:
            raise ConfigError(f"the tokenizer merges these values with the JSON around them, so "
                              f"constrained decoding cannot force the skeleton: {bad[:10]}")
        # every value (and "unknown") one token: decoding can run in lockstep (generate_lockstep)
        self.single_token = [bool(trie.children) and all(not c.children and c.value is not None
                                                         for c in trie.children.values()) for trie in self.tries]
        self.single_token_values = all(self.single_token)
        # per field: the choice rule over its allowed tokens (None: greedy)
        self.choice: list[ChoiceRule | None] = [None] * len(self.fields)

    def set_choice(self, field: str, rule: ChoiceRule | None) -> None:
        """Choose ``field``'s value with ``rule(probs)`` instead of greedily (None: greedy again).

        ``rule`` takes the probabilities [rows, k] over the field's k allowed tokens (in
        ``tries[i].children`` order) and returns each row's chosen index (a long tensor [rows]).
        Only for a field whose values are all one token: a value is then one choice.
        """
        if field not in self.fields:
            raise ConfigError(f"no field {field!r} to set a choice rule on; fields: {self.fields}")
        i = self.fields.index(field)
        if rule is not None and not self.single_token[i]:
            raise ConfigError(f"a choice rule on {field!r} needs one-token values (the mini tokenizer)")
        self.choice[i] = rule

    def max_tokens(self) -> int:
        return sum(len(f) for f in self.forced) + sum(t.depth() for t in self.tries)


class _RowState:
    __slots__ = ("seg", "pos", "node", "values", "logp", "done")

    def __init__(self, n_fields: int):
        self.seg, self.pos, self.node = 0, 0, None
        self.values: list[str | None] = [None] * n_fields
        self.logp = [0.0] * n_fields
        self.done = False


class ConstrainedJson:
    """A transformers LogitsProcessor that keeps each row inside the grammar (greedy decoding)."""

    def __init__(self, grammar: JsonGrammar, batch_size: int, prompt_len: int, pad_id: int, views: int = 1):
        self.g = grammar
        self.views = views
        self.prompt_len = prompt_len
        self.pad_id = pad_id
        self.rows = [_RowState(len(grammar.fields)) for _ in range(batch_size)]
        self._last_logp = None

    # segments alternate forced(0), value(1), forced(1), ..., value(n), forced(n)
    def _allowed(self, s: _RowState) -> list[int]:
        if s.done:
            return [self.pad_id, self.g.eos_id]
        if s.node is None:
            return [self.g.forced[s.seg][s.pos]]
        out = list(s.node.children)
        if s.node.value is not None:
            out.append(self.g.forced[s.seg + 1][0])
        return out

    def _advance(self, s: _RowState, tok: int, logp: float) -> None:
        if s.done:
            return
        if s.node is None:  # inside forced segment s.seg
            s.pos += 1
            if s.pos == len(self.g.forced[s.seg]):
                if s.seg == len(self.g.fields):
                    s.done = True
                else:
                    s.node = self.g.tries[s.seg]  # value of field s.seg comes next
            return
        field_i = s.seg
        s.logp[field_i] += logp
        if tok in s.node.children:
            s.node = s.node.children[tok]
            return
        # the value ended: this token was the first of the next forced segment
        s.values[field_i] = s.node.value
        s.node, s.seg, s.pos = None, s.seg + 1, 1
        if s.pos == len(self.g.forced[s.seg]):
            if s.seg == len(self.g.fields):
                s.done = True
            else:
                s.node = self.g.tries[s.seg]

    def __call__(self, input_ids, scores):
        import torch

        if input_ids.shape[1] > self.prompt_len and self._last_logp is not None:
            last = input_ids[:, -1].tolist()
            for i, (s, t) in enumerate(zip(self.rows, last)):
                self._advance(s, t, float(self._last_logp[i, t]))
        mask = torch.full_like(scores, float("-inf"))
        for i, s in enumerate(self.rows):
            mask[i, self._allowed(s)] = 0.0
        out = scores + mask
        self._last_logp = torch.log_softmax(out.float(), dim=-1)
        if self.views > 1:  # all views of an image share a state, so the same allowed tokens
            self._last_logp = view_mean(self._last_logp, self.views)
            out = self._last_logp
        return self._restrict_to_choice(out)

    def _restrict_to_choice(self, out):
        """Rows about to choose a value by a field's choice rule may only take the rule's choice;
        the confidence still comes from the unrestricted ``_last_logp``."""
        copied = False
        for i, s in enumerate(self.rows):
            if s.done or s.node is None or s.node is not self.g.tries[s.seg] or self.g.choice[s.seg] is None:
                continue
            if not copied:  # ``out`` may be ``_last_logp`` itself (views)
                out, copied = out.clone(), True
            allowed = list(s.node.children)
            best = allowed[int(self.g.choice[s.seg](self._last_logp[i:i + 1, allowed].exp())[0])]
            keep = out[i, best].clone()
            out[i] = float("-inf")
            out[i, best] = keep
        return out

    def results(self) -> list[dict[str, dict[str, Any]]]:
        return _field_results(self.g, self.rows[:len(self.rows) // self.views])


def view_mean(logp, views: int):
    """Log of the views' mean probabilities, tiled back to every view's row.

    ``logp``: [views * n, k] log-probabilities (rows view by view). Averaging probabilities, not
    log-probabilities, keeps a view that is sure from being outvoted by a barely different one.
    """
    import torch

    if views == 1:
        return logp
    n = logp.shape[0] // views
    if n * views != logp.shape[0]:
        raise ValueError(f"{logp.shape[0]} rows do not split into {views} views")
    mean = torch.logsumexp(logp.reshape(views, n, -1), dim=0) - math.log(views)
    return mean.repeat(views, 1)


def _field_results(grammar: JsonGrammar, rows: Sequence[_RowState]) -> list[dict[str, dict[str, Any]]]:
    """Per row: field -> {"value" (None for unknown), "confidence" (probability of the value path)}."""
    res = []
    for s in rows:
        row = {}
        for f, v, lp in zip(grammar.fields, s.values, s.logp):
            row[f] = {"value": None if v in (None, grammar.unknown) else v,
                      "confidence": round(math.exp(lp), 4) if v is not None else 0.0}
        res.append(row)
    return res


def _inner_vlm(model):
    """The Qwen2.5-VL backbone (``Qwen2_5_VLModel``, which owns get_rope_index), peft-wrapped or not."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.model


def _prefill(model, batch: dict[str, Any], prefix: list[int]):
    """Forward the prompt + ``prefix`` (same tokens on every row) with 3-D rope positions.

    Returns (the forward's output, attention mask, next text position per row). The prompt's
    positions come from the model's own rule; text after it continues from each row's last real
    token (what generate() does through rope_deltas).
    """
    import torch

    vlm = _inner_vlm(model)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    tail = torch.tensor(prefix, dtype=torch.long, device=ids.device).expand(ids.shape[0], -1)
    ids = torch.cat([ids, tail], 1)
    mask = torch.cat([mask, torch.ones_like(tail)], 1)
    mm = torch.cat([batch["mm_token_type_ids"], torch.zeros_like(tail)], 1)
    pos, deltas = vlm.get_rope_index(ids, image_grid_thw=batch["image_grid_thw"], attention_mask=mask,
                                     mm_token_type_ids=mm)
    extra = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask", "mm_token_type_ids")}
    out = model(input_ids=ids, attention_mask=mask, mm_token_type_ids=mm, position_ids=pos,
                use_cache=True, logits_to_keep=1, **extra)
    return out, mask, mask.sum(-1, keepdim=True) + deltas


def _text_positions(start, length: int):
    """3-D rope positions of ``length`` text tokens from ``start`` (per row): equal on all axes."""
    import torch

    return (start + torch.arange(length, device=start.device)).unsqueeze(0).expand(3, -1, -1)


def _pick(logits, grammar: JsonGrammar, field_i: int, views: int = 1):
    """Value of field ``field_i`` per row from its logits: (token ids, log-probs over allowed).

    Greedy, or by the field's choice rule (module docstring). With ``views`` > 1 the choice
    is made from the views' mean probabilities (`view_mean`) and is the same on every view's
    row of an image.
    """
    import torch

    allowed = list(grammar.tries[field_i].children)
    logp = view_mean(torch.log_softmax(logits[:, allowed].float(), dim=-1), views)
    rule = grammar.choice[field_i]
    best = logp.argmax(-1) if rule is None else rule(logp.exp())
    best_lp = logp.gather(1, best[:, None])[:, 0]
    return [allowed[b] for b in best.tolist()], best_lp.tolist()


def _answer_ids(grammar: JsonGrammar, chosen: list[list[int]], dev):
    """The full answer per row: forced skeleton with each row's chosen value tokens."""
    import torch

    cols = []
    for i, seg in enumerate(grammar.forced):
        cols.append(torch.tensor(seg, dtype=torch.long, device=dev).expand(len(chosen), -1))
        if i < len(grammar.tries):
            cols.append(torch.tensor([c[i] for c in chosen], dtype=torch.long, device=dev)[:, None])
    return torch.cat(cols, 1)


def _rows(grammar: JsonGrammar, chosen: list[list[int]], logps: list[list[float]]) -> list[_RowState]:
    rows = []
    for toks, lps in zip(chosen, logps):
        s = _RowState(len(grammar.fields))
        s.values = [trie.children[t].value for trie, t in zip(grammar.tries, toks)]
        s.logp = list(lps)
        rows.append(s)
    return rows


def generate_lockstep(model, batch: dict[str, Any], grammar: JsonGrammar, views: int = 1):
    """Constrained decoding in one forward pass per field, for grammars whose values are one token.

    Every row then walks the same skeleton in step, so each field's forced text and the previous
    field's chosen value are fed together (KV cache kept): 1 + n_fields - 1 forwards instead of
    one per output token. Greedy choice and confidence are those of `ConstrainedJson`.
    """
    import torch

    n, dev = batch["input_ids"].shape[0], batch["input_ids"].device
    chosen: list[list[int]] = [[] for _ in range(n)]
    logps: list[list[float]] = [[] for _ in range(n)]
    with torch.no_grad():
        out, mask, start = _prefill(model, batch, grammar.forced[0])
        for i in range(len(grammar.tries)):
            toks, lps = _pick(out.logits[:, -1], grammar, i, views)
            for c, lp, t, p in zip(chosen, logps, toks, lps):
                c.append(t)
                lp.append(p)
            if i == len(grammar.tries) - 1:
                break  # the closing brace and end of turn need no forward
            step = torch.cat([torch.tensor(toks, dtype=torch.long, device=dev)[:, None],
                              torch.tensor(grammar.forced[i + 1], dtype=torch.long, device=dev).expand(n, -1)], 1)
            mask = torch.cat([mask, torch.ones_like(step)], 1)
            out = model(input_ids=step, attention_mask=mask, position_ids=_text_positions(start, step.shape[1]),
                        cache=out.cache, use_cache=True, logits_to_keep=1)
            start = start + step.shape[1]
    return _answers(grammar, chosen, logps, views, dev)


def _answers(grammar: JsonGrammar, chosen: list[list[int]], logps: list[list[float]], views: int, dev):
    """Field results and answer token ids of the first view's rows (all views agree)."""
    n = len(chosen) // views
    chosen, logps = chosen[:n], logps[:n]
    return _field_results(grammar, _rows(grammar, chosen, logps)), _answer_ids(grammar, chosen, dev)


def generate_jacobi(model, batch: dict[str, Any], grammar: JsonGrammar, views: int = 1):
    """The greedy answer of `generate_lockstep` in fewer forward passes (Jacobi fixed-point decoding).

    After the prompt, the whole answer skeleton is fed at once with a guess for every value; one
    forward then predicts every field given the values fed before it. The predictions become the
    next guesses until a pass predicts exactly what it was fed: then every value is the greedy
    choice given the values before it, which is the lockstep answer. Pass k makes field k exact,
    so it never needs more forwards than lockstep. The tagger's fields depend mostly on the image
    and little on each other, so a few passes replace one forward per field, each of which is
    mostly fixed per-call overhead for a small model on a CPU.
    """
    import torch

    n, dev = batch["input_ids"].shape[0], batch["input_ids"].device
    n_fields = len(grammar.tries)
    # the answer after forced[0]: value 0, forced[1], value 1, ..., value n-2, forced[n-1];
    # the logits at the end of forced[i] choose value i
    rest: list[int | None] = []
    ends: list[int] = []
    for i in range(1, n_fields):
        rest.append(None)
        rest.extend(grammar.forced[i])
        ends.append(len(rest) - 1)
    slots = [k for k, t in enumerate(rest) if t is None]
    unknown = [next(t for t, c in trie.children.items() if c.value == grammar.unknown) for trie in grammar.tries]
    with torch.no_grad():
        out, mask, start = _prefill(model, batch, grammar.forced[0])
        first, first_lp = _pick(out.logits[:, -1], grammar, 0, views)
        chosen, logps = [[t] for t in first], [[lp] for lp in first_lp]
        if n_fields > 1:
            cache = out.cache
            first_t = torch.tensor(first, dtype=torch.long, device=dev)[:, None]
            # first guesses for values 1.. : "unknown", a value every field has
            fed = torch.cat([first_t, torch.tensor(unknown[1:-1], dtype=torch.long, device=dev).expand(n, -1)], 1)
            answer = torch.tensor([0 if t is None else t for t in rest], dtype=torch.long, device=dev).repeat(n, 1)
            answer_mask = torch.cat([mask, torch.ones_like(answer)], 1)
            positions = _text_positions(start, answer.shape[1])
            keep = torch.tensor(ends, dtype=torch.long, device=dev)  # logits only where a value is chosen
            for _ in range(n_fields - 1):  # after pass k values 0..k are exact: n-1 passes suffice
                answer[:, slots] = fed
                out = model(input_ids=answer, attention_mask=answer_mask, position_ids=positions, cache=cache,
                            use_cache=True, logits_to_keep=keep)
                cache.crop(-answer.shape[1])  # the next pass re-feeds the answer with new values
                picks = [_pick(out.logits[:, i], grammar, i + 1, views) for i in range(n_fields - 1)]
                pred = torch.tensor([toks for toks, _ in picks], dtype=torch.long, device=dev).T
                nxt = torch.cat([first_t, pred[:, :-1]], 1)
                if torch.equal(nxt, fed):
                    break
                fed = nxt
            for r in range(n):
                chosen[r] += pred[r].tolist()
                logps[r] += [lps[r] for _, lps in picks]
    return _answers(grammar, chosen, logps, views, dev)


def generate_constrained(model, batch: dict[str, Any], grammar: JsonGrammar, pad_id: int, *,
                         method: str = "jacobi", views: int = 1):
    """Greedy constrained decoding of one left-padded batch; returns per-row field dicts and texts.

    ``method``: ``jacobi`` (default; fewest forwards) or ``lockstep`` (one forward per field) when
    every value is one token (the mini/tiny tokenizers make sure of it); ``generate`` - and any
    grammar with multi-token values - uses transformers' generate() with a logits processor.
    All three give the same answer (tested). ``views``: the batch holds that many views of each
    image, stacked view by view (module docstring); one answer per image is returned.
    """
    import torch
    from transformers import LogitsProcessorList

    if method not in ("jacobi", "lockstep", "generate"):
        raise ValueError(f"method must be jacobi, lockstep or generate, got {method!r}")
    if method != "generate" and grammar.single_token_values and "mm_token_type_ids" in batch:
        return (generate_jacobi if method == "jacobi" else generate_lockstep)(model, batch, grammar, views)

    proc = ConstrainedJson(grammar, batch["input_ids"].shape[0], batch["input_ids"].shape[1], pad_id, views)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=grammar.max_tokens(), do_sample=False,
                             logits_processor=LogitsProcessorList([proc]), pad_token_id=pad_id,
                             eos_token_id=grammar.eos_id)
    # the processor sees a token only on the step after it is chosen: feed the last one
    last = out[:, -1].tolist()
    if out.shape[1] > batch["input_ids"].shape[1] and proc._last_logp is not None:
        for i, (s, t) in enumerate(zip(proc.rows, last)):
            if not s.done:
                proc._advance(s, t, float(proc._last_logp[i, t]))
    return proc.results(), out[:out.shape[0] // views, batch["input_ids"].shape[1]:]


def generate_free(model, batch: dict[str, Any], max_new_tokens: int, pad_id: int, eos_id: int):
    """Unconstrained greedy decoding; returns new token ids and each chosen token's probability."""
    import torch

    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                             output_scores=True, return_dict_in_generate=True,
                             pad_token_id=pad_id, eos_token_id=eos_id)
    new = out.sequences[:, batch["input_ids"].shape[1]:]
    probs = torch.stack([torch.softmax(s.float(), dim=-1).gather(1, new[:, k:k + 1]).squeeze(1)
                         for k, s in enumerate(out.scores)], dim=1) if out.scores else torch.zeros_like(new, dtype=torch.float)
    return new, probs


def span_confidence(tokenizer, ids: Sequence[int], probs: Sequence[float], spans: Mapping[str, tuple[int, int]]
                    ) -> dict[str, float]:
    """Product of the probabilities of the tokens that overlap each character span of the text."""
    ends, text = [], ""
    for k in range(len(ids)):
        text = tokenizer.decode(ids[:k + 1], skip_special_tokens=True)
        ends.append(len(text))
    out = {}
    for f, (a, b) in spans.items():
        p, start = 1.0, 0
        for k, end in enumerate(ends):
            if end > a and start < b:
                p *= float(probs[k])
            start = end
        out[f] = round(p, 4)
    return out
