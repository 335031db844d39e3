"""Knowledge incorporation as a domain of the outer loop (`seal.rl.protocols`): contexts are passages,
a self-edit is text to train on, the reward is closed-book accuracy on the passage's questions after
the inner loop; the reference `passage` trains on the passage alone."""

from __future__ import annotations

from dataclasses import replace

from seal.data.passage import Passage
from seal.domains.knowledge.config import KnowledgeSetup
from seal.domains.knowledge.self_edit import SelfEditConfig
from seal.domains.knowledge.task import KnowledgeTask
from seal.infra.config import derive_seed
from seal.infra.run_dir import RunDir
from seal.models.loading import load_model
from seal.rl.reward import MEASURES, REWARDS, EditReward


class KnowledgeDomain:
    title = "ReST-EM (SEAL outer loop) on knowledge incorporation"
    unit = "questions"
    references = ("passage",)
    labels = {"self_edit": "self-edit accuracy", "base": "base (no update)", "passage": "passage only"}

    def __init__(self, cfg: KnowledgeSetup, held_out_source: str = "", eval_passages: int = 0,
                 reward: str = "accuracy"):
        self.cfg, self.held_out_source, self.eval_passages = cfg, held_out_source, eval_passages
        self.reward_name = reward

    def open(self, policy: str, round_: int) -> KnowledgeSession:
        cfg = self.cfg
        model_cfg = replace(cfg.model, name=policy)
        model, tok = load_model(model_cfg)
        # with an engine worker (backend=vllm) each policy gets a fresh engine process
        task = KnowledgeTask(model, tok, model_cfg, cfg.inner_loop, cfg.qa_eval, cfg.grader, cfg.self_edit,
                             backend=cfg.backend, seed=derive_seed(cfg.seed, "engine", round_))
        return KnowledgeSession(task, cfg.self_edit, MEASURES[self.reward_name])

    def reward(self, context: Passage, sample: int, runs: list[dict], base: dict) -> EditReward:
        """`restem.reward` (`seal.rl.reward.REWARDS`); the paper's is `accuracy`: the adapted model's
        accuracy on the passage's questions, mean over seeds."""
        return REWARDS[self.reward_name](context.uid, sample, runs, base)

    def outcomes(self, record: dict, context: Passage) -> list[float]:
        if "questions" in record:
            return [float(q["correct"]) for q in record["questions"]]
        return [0.0] * len(context.questions)  # a skipped edit scores 0 on every question

    def describe(self) -> str:
        c = self.cfg
        return (f"Model `{c.model.name}`; training data `{c.data.source}`, held-out `{self.held_out_source}` "
                f"({self.eval_passages} passages); format `{c.self_edit.format}`; grader `{c.grader.kind}`.")

    def report_sections(self, rd: RunDir) -> list[str]:
        return []


class KnowledgeSession:
    def __init__(self, task: KnowledgeTask, se_cfg: SelfEditConfig, estep_measure: str = "accuracy"):
        self.task, self.fmt, self.se_cfg = task, se_cfg.format, se_cfg
        self.adapters_per_batch = task.adapters_per_batch
        self.estep_measure = estep_measure

    def sample(self, contexts, k, seed, desc):
        out = self.task.sample(contexts, self.fmt, k, seed, desc=desc, with_ids=True)
        return [[t for t, _ in row] for row in out], [[ids for _, ids in row] for row in out], None

    def base_many(self, contexts):
        out = [{"accuracy": acc, "questions": qs} for acc, qs in self.task.base_accuracies(contexts)]
        if self.estep_measure == "likelihood":  # the E-step's gains are over the unadapted likelihood
            for rec, (lp, qs) in zip(out, self.task.base_likelihoods(contexts)):
                rec["likelihood"], rec["likelihood_questions"] = lp, qs
        return out

    def adapt_many(self, items):
        jobs = [(p, text, self.fmt, seed) if cond in ("self_edit", "estep") else (p, "", "none", seed)
                for cond, p, text, seed in items]
        if {cond for cond, *_ in items} == {"estep"}:  # the outer loop never mixes E-step and held-out items
            return self.task.adapt_and_evaluate_many(jobs, measure=self.estep_measure)
        return self.task.adapt_and_evaluate_many(jobs)

    def sample_prompt(self, context):
        return self.task.prompt(context, self.fmt)

    def adapter_info(self):
        return self.task.inner.adapter_info()

    def close(self):
        self.task.close()
