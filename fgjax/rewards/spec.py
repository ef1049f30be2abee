"""What each fused reward model is and how its output becomes a reward; start-up checks."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

KINDS = ("token_cls", "seq_reg")
LEVELS = ("subsentence", "sentence", "sequence")


@dataclasses.dataclass(frozen=True)
class RewardModelSpec:
    """One reward model of the dense reward.

    ``token_cls`` models (R1 relevance at sub-sentence ends, R2 factuality at sentence ends)
    give ``positive`` at a segment end the model calls error-free, else ``negative``.
    ``seq_reg`` models (R3 completeness, the holistic preference RM) give
    ``(score - mean) / std * scale + bias`` at the last response token. The combined reward is
    ``sum(weight * reward)`` over the models.
    """

    name: str  # metric names: reward/<name>, reward/<name>_ok_ratio, ...
    kind: str  # "token_cls" | "seq_reg" (the model's head)
    level: str  # "subsentence" | "sentence" for token_cls; "sequence" for seq_reg
    checkpoint: str = ""  # HF directory (config.json + safetensors) of the reward model
    weight: float = 1.0
    # The RM's own prompt tokens are batch[f"{input}_ids"], batch[f"{input}_mask"], [B, P_rm],
    # e.g. "rm_question" (question only, R1) or "prompt" (the policy prompt with passages, R2).
    input: str = "prompt"
    # token_cls
    positive: float = 1.0
    negative: float = -1.0
    error_label: int | None = None  # the class meaning "this segment has an error"
    # When set, only the error and ok logits are compared (the release reads a 3-way classifier
    # this way); otherwise a segment is an error when the argmax over all labels is error_label.
    ok_label: int | None = None
    # seq_reg normalisation
    mean: float = 0.0
    std: float = 1.0
    scale: float = 1.0
    bias: float = 0.0

    def __post_init__(self):
        where = f"reward model {self.name!r}"
        if not self.name or "/" in self.name:
            raise ValueError(f"{where}: name must be non-empty and contain no '/'")
        if self.kind not in KINDS:
            raise ValueError(f"{where}: kind={self.kind!r}; allowed {KINDS}")
        allowed = ("subsentence", "sentence") if self.kind == "token_cls" else ("sequence",)
        if self.level not in allowed:
            raise ValueError(
                f"{where}: level={self.level!r} for kind {self.kind!r}; allowed {allowed}"
            )
        if self.kind == "token_cls":
            if self.error_label is None or self.error_label < 0:
                raise ValueError(f"{where}: token_cls needs error_label >= 0")
            ok = self.ok_label
            if ok is not None and (ok < 0 or ok == self.error_label):
                raise ValueError(f"{where}: ok_label must be >= 0 and differ from error_label")
        if self.kind == "seq_reg" and not self.std > 0:
            raise ValueError(f"{where}: std must be > 0, got {self.std}")
        if not self.input:
            raise ValueError(f"{where}: input (the batch key prefix of its prompt) is empty")

    @property
    def input_keys(self) -> tuple[str, str]:
        """Batch keys of this RM's prompt ids and mask."""
        return f"{self.input}_ids", f"{self.input}_mask"


def check_unique_names(specs) -> None:
    names = [s.name for s in specs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"reward model names must be unique; repeated: {duplicated}")


def check_same_tokenizer(policy_tokenizer: Any, rm_tokenizers: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first reward model whose tokenizer vocabulary differs
    from the policy's: fused reward models read the policy's token ids directly."""
    policy_vocab = policy_tokenizer.get_vocab()
    for name, tokenizer in rm_tokenizers.items():
        vocab = tokenizer.get_vocab()
        if vocab == policy_vocab:
            continue
        differing = sorted(
            tok for tok in set(vocab) | set(policy_vocab) if vocab.get(tok) != policy_vocab.get(tok)
        )
        raise ValueError(
            f"reward model {name!r}: its tokenizer's vocabulary differs from the policy's "
            f"({len(vocab)} vs {len(policy_vocab)} tokens; {len(differing)} differ, e.g. "
            f"{differing[:5]}). Fused reward models must share the policy tokenizer."
        )
