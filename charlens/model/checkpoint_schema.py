"""What a charlens checkpoint may hold: every field's type, range and shape, checked before anything
is built from it, and a content hash that detects damaged bytes.

`check_state` raises FieldError(field, problem) for the first field that is wrong; model/checkpoint.py
turns it into one line naming the file and the field. Order matters: the model_config is checked
against model.limits.ARCH_RANGES and a memory estimate before the expected tensors are even listed
(model.limits.state_shapes: names and shapes without building a model).
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import torch

from charlens.data.corpora import LANGS, check_identity
from charlens.data.tokenizer import tokenizer_from_dict
from charlens.model.limits import ARCH_RANGES, Range, available_memory, gib, model_bytes, parameter_shapes, state_shapes
from charlens.model.transformer import ModelConfig

REQUIRED_KEYS = ("model_config", "model", "tokenizer", "corpus", "iter")
HASH_KEY = "content_sha256"  # absent in checkpoints written before it was added: they load with a warning
OPTIONAL_KEYS = ("train_args", "optimizer", "rng", "history", "probe", HASH_KEY)
SCALARS = (bool, int, float, str, type(None))
# Records of the training history by kind, with the numbers each must hold (training/log.py plots them).
HISTORY_FIELDS = {"step": ("iter", "loss", "lr", "ms"), "eval": ("iter", "train_loss", "val_loss"),
                  "final": ("iter", "val_loss", "val_bits_per_char"), "probe": ("iter", "ms")}
# A probe record's (training/timeline.py) arrays by shape, D detectors x L layers x H heads, and its
# numbers that may be null (undefined: e.g. no probe window holds a detector's targets).
PROBE_GRIDS = {"score": "DLH", "control": "DLH", "selectivity": "DLH", "repeated_score": "LH",
               "repeated_control": "LH", "repeated_selectivity": "LH"}
PROBE_CIRCUITS = {"ov_copying": "LH", "qk_previous": "LH", "k_composition": "LHLH", "qk_match": "LHLH"}  # optional
PROBE_NUMBERS = ("probe_loss", "loss_early", "loss_late", "icl_score", "loss_first_copy", "loss_second_copy")
PROBE_TEXTS = {"windows": "block_size", "repeated": "block_size"}  # the probe set's texts, at most this long
ADAM_MOMENTS = ("exp_avg", "exp_avg_sq")
FINITE = Range(-1e308, 1e308, float)
OPTIONAL_CONFIG = ("attn_only",)  # model_config fields added later (booleans, false when absent)


class FieldError(Exception):
    """A field of a checkpoint that is wrong: which one (e.g. 'model_config.block_size') and why."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


def require(ok: bool, field: str, problem: str) -> None:
    if not ok:
        raise FieldError(field, problem)


MAX_DEPTH = 64  # containers in containers: a checkpoint charlens writes nests about 7 deep


def too_deep(obj: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether containers (dicts, lists, tuples; keys included) nest more than `limit` deep in `obj`, found
    without recursion, so that the recursive walks after it (hash, checks) never meet Python's stack limit."""
    stack = [(obj, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list, tuple)):
            if depth >= limit:
                return True
            inner = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((v, depth + 1) for v in inner)
    return False


def _feed(h: Any, obj: Any) -> None:
    """Hash `obj` in a canonical form: tensors by dtype, shape and bytes; containers in key order."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(obj, dict):
        h.update(f"d{len(obj)};".encode())
        for k in sorted(obj, key=repr):
            _feed(h, k)
            _feed(h, obj[k])
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__}{len(obj)};".encode())
        for v in obj:
            _feed(h, v)
    else:
        r = repr(obj)
        h.update(f"{type(obj).__name__}{len(r)}:{r};".encode())


def content_hash(state: dict) -> str:
    """sha256 over every field but the hash itself, tensors included (stored at save, checked at load)."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in state.items() if k != HASH_KEY})
    return h.hexdigest()


def check_model_config(d: Any) -> ModelConfig:
    require(isinstance(d, dict), "model_config", f"expected a dict, got {type(d).__name__}")
    names = [f.name for f in dataclasses.fields(ModelConfig)]
    missing = [k for k in names if k not in d and k not in OPTIONAL_CONFIG]
    unknown = [k for k in d if k not in names]
    require(not missing and not unknown, "model_config",
            f"missing {', '.join(missing)}" if missing else f"unknown key(s) {', '.join(map(repr, unknown))}")
    for name, allowed in ARCH_RANGES.items():
        problem = allowed.problem(d[name])
        require(problem is None, f"model_config.{name}", str(problem))
    for key in ("bias", *OPTIONAL_CONFIG):
        require(isinstance(d.get(key, False), bool), f"model_config.{key}", f"must be true or false, got {d.get(key)!r}")
    require(d["n_embd"] % d["n_head"] == 0, "model_config.n_embd",
            f"{d['n_embd']} is not divisible by n_head {d['n_head']}")
    return ModelConfig(**d)


def check_tensor(t: Any, field: str, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    require(type(t) is torch.Tensor and t.layout == torch.strided, field, f"expected a tensor, got {type(t).__name__}")
    require(tuple(t.shape) == shape, field, f"has shape {tuple(t.shape)}, the model_config needs {shape}")
    require(t.dtype == dtype, field, f"has dtype {t.dtype}, expected {dtype}")
    require(not t.is_floating_point() or bool(torch.isfinite(t).all()), field, "holds NaN or infinite values")


def check_weights(weights: Any, expected: dict[str, tuple[int, ...]]) -> None:
    require(isinstance(weights, dict), "model", f"expected a dict of tensors, got {type(weights).__name__}")
    missing, unknown = [k for k in expected if k not in weights], [k for k in weights if k not in expected]
    require(not missing, "model", f"missing tensor(s) {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
    require(not unknown, "model", f"unknown tensor(s) {', '.join(map(repr, unknown[:3]))}")
    for name, shape in expected.items():
        check_tensor(weights[name], f"model[{name}]", shape, torch.float32)


def check_optimizer(opt: Any, params: list[tuple[int, ...]]) -> None:
    """AdamW state as training.engine.make_optimizer builds it: two groups, the matrices (dim >= 2)
    then the vectors, each in model.parameters() order, moments shaped like their parameter."""
    require(isinstance(opt, dict) and opt.keys() == {"state", "param_groups"}, "optimizer",
            "expected a dict with state and param_groups")
    order = [p for p in params if len(p) >= 2] + [p for p in params if len(p) < 2]
    groups = opt["param_groups"]
    require(isinstance(groups, list) and all(isinstance(g, dict) for g in groups), "optimizer.param_groups",
            "expected a list of dicts")
    sizes = [sum(len(p) >= 2 for p in params), sum(len(p) < 2 for p in params)]
    ids = [g.get("params") for g in groups]
    require(all(isinstance(i, list) for i in ids) and list(map(len, ids)) == sizes, "optimizer.param_groups",
            f"expected groups of {sizes[0]} and {sizes[1]} parameters")
    require(sum(ids, []) == list(range(len(order))), "optimizer.param_groups", "parameter ids are not 0, 1, 2, ...")
    for k, g in enumerate(groups):
        for key in ("lr", "eps", "weight_decay"):
            require(Range(0, 1e6, float).problem(g.get(key)) is None, f"optimizer.param_groups[{k}].{key}",
                    f"must be a non-negative number, got {g.get(key)!r}")
        betas = g.get("betas")
        require(isinstance(betas, (tuple, list)) and len(betas) == 2
                and all(Range(0, 1, float, hi_open=True).problem(b) is None for b in betas),
                f"optimizer.param_groups[{k}].betas", f"must be two numbers in [0, 1), got {betas!r}")
        require(all(isinstance(v, SCALARS) for key, v in g.items() if key not in ("params", "betas")),
                f"optimizer.param_groups[{k}]", "holds a value that is not a number, string or boolean")
    state = opt["state"]
    require(isinstance(state, dict) and all(isinstance(i, int) and 0 <= i < len(order) for i in state),
            "optimizer.state", "expected a dict keyed by parameter ids")
    amsgrad = any(g.get("amsgrad") for g in groups)
    for i, entry in state.items():
        field = f"optimizer.state[{i}]"
        moments = ADAM_MOMENTS + (("max_exp_avg_sq",) if amsgrad else ())
        require(isinstance(entry, dict) and set(entry) == {"step", *moments}, field,
                f"expected the keys step, {', '.join(moments)}")
        check_tensor(entry["step"], f"{field}.step", (), torch.float32)
        require(float(entry["step"]) >= 0, f"{field}.step", "is negative")
        for key in moments:
            check_tensor(entry[key], f"{field}.{key}", order[i], torch.float32)
        require(bool((entry["exp_avg_sq"] >= 0).all()), f"{field}.exp_avg_sq", "holds negative values")


def check_rng(rng: Any, field: str = "rng") -> None:
    """Generator states: batch, torch, cuda, and under DDP `ranks`, one dict of torch/cuda states per
    process (training/engine.py restores each process's own)."""
    require(isinstance(rng, dict) and rng.keys() <= {"batch", "torch", "cuda", "ranks"}, field,
            "expected a dict of generator states named batch, torch, cuda or ranks")
    for key, t in rng.items():
        if key == "ranks":
            require(field == "rng" and isinstance(t, list) and len(t) > 0, f"{field}.ranks",
                    "expected a non-empty list of per-process generator states")
            for k, states in enumerate(t):
                require(isinstance(states, dict) and states.keys() <= {"torch", "cuda"}, f"{field}.ranks[{k}]",
                        "expected a dict of generator states named torch or cuda")
                check_rng(states, f"{field}.ranks[{k}]")
            continue
        require(type(t) is torch.Tensor and t.dtype == torch.uint8 and t.dim() == 1, f"{field}.{key}",
                "expected a 1-d uint8 tensor (a generator state)")
        if key != "cuda":  # both are CPU generator states; a CUDA state can only be checked on a GPU
            try:
                torch.Generator().set_state(t)
            except RuntimeError as e:
                raise FieldError(f"{field}.{key}", f"not a valid generator state ({e})") from None


def _is_number_or_null(v: Any) -> bool:
    return v is None or FINITE.problem(v) is None


def check_grid(value: Any, shape: tuple[int, ...], field: str) -> None:
    """Nested lists of exactly `shape` whose leaves are finite numbers or null; null alone for the whole grid."""
    if value is None:
        return
    rows = [value]
    for depth, n in enumerate(shape):
        require(all(isinstance(r, list) and len(r) == n for r in rows), field,
                f"expected nested lists of shape {shape} (axis {depth} of length {n})")
        rows = [v for r in rows for v in r]
    require(all(_is_number_or_null(v) for v in rows), field, "holds a value that is neither a finite number nor null")


def check_probe_record(record: dict, field: str, config: dict) -> None:
    """A timeline record: detector names, (D, L, H) and (L, H) grids, and numbers or null."""
    names = record.get("detectors")
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise FieldError(f"{field}.detectors", "expected a list of detector names")
    sizes = {"D": len(names), "L": config["n_layer"], "H": config["n_head"]}
    for key, axes in PROBE_GRIDS.items():
        require(key in record, f"{field}.{key}", "is missing")
        check_grid(record[key], tuple(sizes[a] for a in axes), f"{field}.{key}")
    for key, axes in PROBE_CIRCUITS.items():  # absent from records written before circuit scores were recorded
        check_grid(record.get(key), tuple(sizes[a] for a in axes), f"{field}.{key}")
    for key in PROBE_NUMBERS:
        require(key in record and _is_number_or_null(record[key]), f"{field}.{key}",
                f"must be a finite number or null, got {record.get(key)!r}")


def check_history(history: Any, config: dict) -> None:
    require(isinstance(history, list), "history", f"expected a list, got {type(history).__name__}")
    for k, record in enumerate(history):
        kind = record.get("kind") if isinstance(record, dict) else None
        need = HISTORY_FIELDS.get(kind) if isinstance(kind, str) else None
        require(need is not None, f"history[{k}]", f"expected a record of kind {', '.join(HISTORY_FIELDS)}")
        for key in need or ():
            require(FINITE.problem(record.get(key)) is None, f"history[{k}].{key}",
                    f"must be a finite number, got {record.get(key)!r}")
        if kind == "probe":
            check_probe_record(record, f"history[{k}]", config)


def check_probe(probe: Any, config: dict) -> None:
    """The probe set of a timeline (training/timeline.py): its texts, seed, language and detector names."""
    require(isinstance(probe, dict), "probe", f"expected a dict, got {type(probe).__name__}")
    require(isinstance(probe.get("detectors"), list) and all(isinstance(n, str) for n in probe["detectors"]),
            "probe.detectors", "expected a list of detector names")
    for key, bound in PROBE_TEXTS.items():
        texts = probe.get(key)
        require(isinstance(texts, list) and all(isinstance(t, str) and 0 < len(t) <= config[bound] for t in texts)
                and len({len(t) for t in texts}) <= 1, f"probe.{key}",
                f"expected a list of equal-length texts of 1..{config[bound]} characters")
    require(len(probe["windows"]) > 0, "probe.windows", "is empty")  # a list, checked above
    require(Range(0, 2**63 - 1).problem(probe.get("seed")) is None, "probe.seed", f"must be a seed, got {probe.get('seed')!r}")
    require(probe.get("lang") in LANGS, "probe.lang", f"must be one of {', '.join(LANGS)}, got {probe.get('lang')!r}")


def check_train_args(args: Any, config: dict) -> None:
    """A flat dict of settings; their ranges are checked on --resume by training.config.check_settings."""
    require(isinstance(args, dict) and all(isinstance(k, str) and isinstance(v, SCALARS) for k, v in args.items()),
            "train_args", "expected a dict of names to numbers, strings or booleans")
    for key in ("n_layer", "n_head", "n_embd", "block_size", "dropout", *OPTIONAL_CONFIG):
        have = config.get(key, False)  # optional fields are false when absent
        require(key not in args or args[key] == have, f"train_args.{key}",
                f"{args.get(key)!r} differs from model_config.{key} {have!r}")


def check_state(state: dict) -> None:
    """Every field of a loaded checkpoint dict that holds REQUIRED_KEYS and no unknown key;
    FieldError for the first bad field."""
    config = check_model_config(state["model_config"])
    need, free = model_bytes(config), available_memory()
    require(free is None or need <= free, "model_config",
            f"this model needs {gib(need)} of memory, more than the {gib(free or 0)} available")
    check_weights(state["model"], state_shapes(config))
    try:
        tokenizer = tokenizer_from_dict(state["tokenizer"])
    except ValueError as e:
        raise FieldError("tokenizer", str(e)) from None
    require(tokenizer.vocab_size <= config.vocab_size, "tokenizer",
            f"{tokenizer.vocab_size} tokens do not fit the model's vocab_size {config.vocab_size}")
    try:
        check_identity(state["corpus"])
    except ValueError as e:
        raise FieldError("corpus", str(e)) from None
    require(Range(0, 2**62).problem(state["iter"]) is None, "iter", f"must be a step count, got {state['iter']!r}")
    if "train_args" in state:
        check_train_args(state["train_args"], state["model_config"])
    if "optimizer" in state:
        check_optimizer(state["optimizer"], parameter_shapes(config))
    if "rng" in state:
        check_rng(state["rng"])
    if "history" in state:
        check_history(state["history"], state["model_config"])
    if "probe" in state:
        check_probe(state["probe"], state["model_config"])
