"""What the outer loop asks of a domain (`seal.rl.outer_loop`). A new domain implements these two
protocols in one file (see `seal.domains.knowledge.domain` and `seal.domains.arc.domain`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from seal.infra.run_dir import RunDir
    from seal.rl.reward import EditReward


PHASES = ("eval", "estep")  # what a base_many call scores for: held-out evaluation, or the E-step's reward


class Item(NamedTuple):
    """One inner loop for `Session.adapt_many`. `base` is the unadapted policy's record for the context
    (what `base_many` returned, as recorded), given with E-step items: the reward compares the adapted
    score with it, so whatever the session measured the base on (knowledge `self_questions`: the exam
    the policy wrote) is read from it, never derived again in whichever process runs the item. A plain
    (condition, context, text, seed) tuple is an Item without a base."""
    condition: str  # "self_edit", "estep" or one of the domain's references
    context: Any
    text: str  # the self-edit ("" for a reference)
    seed: int
    base: dict | None = None


class Session(Protocol):
    """One policy loaded for a round."""
    adapters_per_batch: int  # K: recipes cut job lists into fixed chunks of K (resume batches identically)

    def sample(self, contexts: list, k: int, seed: int, desc: str
               ) -> tuple[list[list[str]], list[list[list[int]]], dict | None]:
        """k self-edits per context from the unadapted policy: their texts, the token ids each sample
        really drew (the M-step trains on exactly these), and optional sampling details to record."""

    def sample_prompt(self, context) -> str:
        """The exact text the policy was given to write a self-edit (chat template applied): the M-step's
        prompt, tokenized by `seal.models.loading.prompt_ids` as sampling tokenized it."""

    def adapter_info(self) -> dict:
        """The inner loop's adapter: target modules and trainable parameters (`InnerLoop.adapter_info`)."""

    def base_many(self, contexts: list, phase: str = "eval") -> list[dict]:
        """The unadapted policy's score per context: {accuracy, ...}, in one call. phase (`PHASES`):
        "eval" for held-out contexts (accuracy is all that is read), "estep" for the E-step's contexts,
        whose records also hold whatever the run's reward compares with (`seal.rl.reward.MEASURES`); a
        domain whose reward needs nothing more ignores it."""

    def adapt_many(self, items: list[Item]) -> list[dict]:
        """Items (condition, context, self-edit text, seed[, base]) -> {accuracy, ...} or {skipped:
        reason, ...}. condition is "self_edit" (held-out: scored by accuracy), "estep" (a training
        context: scored by what the run's reward measures, `seal.rl.reward.MEASURES`, against the
        item's base record) or one of the domain's references; up to K items per call, never E-step
        items mixed with others."""

    def close(self) -> None: ...


class Domain(Protocol):
    title: str  # report heading
    unit: str  # what standard errors are over ("questions", "tasks")
    references: tuple[str, ...]  # reference conditions evaluated beside self_edit and base
    labels: dict[str, str]  # condition -> column label

    def open(self, policy: str, round_: int) -> Session: ...

    def reward(self, context, sample: int, runs: list[dict], base: dict) -> EditReward:
        """The reward of one self-edit from its inner loops (one record per seed, as `adapt_many` gave
        them) and the unadapted policy's record for the context (`seal.rl.reward`)."""

    def outcomes(self, record: dict, context) -> list[float]:
        """The 0/1 (or fractional) outcomes a record contributes to accuracy and its standard error."""

    def describe(self) -> str:
        """One line of settings for the report."""

    def report_sections(self, rd: RunDir) -> list[str]:
        """Extra markdown lines for the report (domain-specific tables)."""
