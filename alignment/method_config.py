"""Training configuration: one typed model per method (TRL's config fields we map), the
LoRA adapter, PPO's over-optimisation guard, and ``train:`` as a whole.

Part of the pipeline config (``alignment.config`` re-exports every name here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from alignment.distributed import DistributedConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoraConfig(_Strict):
    """LoRA adapters (PEFT) instead of full fine-tuning; the final model has them merged in."""

    r: int = Field(16, ge=1, description="Rank of each adapter.")
    alpha: int = Field(32, ge=1, description="Scale numerator: adapters are scaled by alpha / r.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapters' input.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear",
        description="Module names to adapt (e.g. [q_proj, v_proj]); 'all-linear' is every linear "
        "layer but the output head.",
    )


class _MethodConfig(_Strict):
    learning_rate: float = Field(5e-4, gt=0, description="Peak learning rate.")
    lr_scheduler_type: Literal["linear", "cosine", "constant"] = Field(
        "linear",
        description="How the rate moves from its peak: 'linear' and 'cosine' decay it to 0 at "
        "the last step (the transformers default), 'constant' holds it.",
    )
    num_train_epochs: float = Field(1.0, gt=0, description="Epochs over the training split.")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1: epochs).")
    per_device_train_batch_size: int = Field(4, ge=1, description="Batch size per process.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per step.")
    max_length: int = Field(256, ge=8, description="Longest sequence in tokens.")
    seed: int = Field(0, description="Seed for data order and initialisation.")
    logging_steps: int = Field(1, ge=1, description="Log metrics every this many steps.")
    save_steps: int = Field(50, ge=1, description="Checkpoint every this many steps.")


class SFTConfig(_MethodConfig):
    """Supervised fine-tuning on the chosen responses (loss on assistant turns only)."""

    learning_rate: float = Field(1e-3, gt=0, description="Peak learning rate.")
    num_train_epochs: float = Field(2.0, gt=0, description="Epochs over the training split.")
    lora: LoraConfig | None = Field(None, description="Train LoRA adapters (merged at the end).")


class DPOConfig(_MethodConfig):
    """Direct preference optimisation from the SFT policy."""

    beta: float = Field(0.1, gt=0, description="Strength of the KL constraint to the reference.")
    loss_type: Literal["sigmoid", "ipo", "hinge", "robust"] = Field(
        "sigmoid",
        description="DPO loss variant. 'ipo' is TRL's length-normalised IPO, "
        "((mean per-token log-ratio of chosen - that of rejected) - 1/(2 beta))^2: its beta (IPO's "
        "tau) acts on a per-token average, so it is not comparable with the beta of 'sigmoid', "
        "'hinge' and 'robust', which scale the summed sequence log-ratio; sweep it separately.",
    )
    label_smoothing: float = Field(
        0.0, ge=0, lt=0.5, description="Assumed share of flipped labels of robust DPO."
    )
    soft_labels: bool = Field(
        False,
        description="Train on each pair's preference probability p (alignment.methods."
        "soft_labels): conservative DPO, per-pair label smoothing 1 - p. loss_type 'sigmoid'.",
    )
    min_label_margin: float = Field(
        0.05, ge=0, lt=0.5, description="With soft_labels: drop pairs with |p - 0.5| below this."
    )
    precompute_ref_log_probs: bool = Field(
        False, description="Score the reference once before training (faster steps on big models)."
    )
    reference_cache: bool = Field(
        True,
        description="Reuse reference log-probs cached in the workspace per (reference model, "
        "dataset file, max_length, tokenizer); computed once on a miss. The reference model is "
        "never loaded during training. Implies precompute_ref_log_probs.",
    )
    logprobs: Literal["auto", "full", "chunked"] = Field(
        "auto",
        description="How completion log-probs are computed: 'full' is one full-vocabulary "
        "log-softmax over the completion tokens (fastest on CPU, memory ~ tokens x vocab); "
        "'chunked' is TRL's tiled kernel (saves memory on GPU with long sequences); 'auto' picks "
        "full on CPU and chunked on GPU.",
    )
    lora: LoraConfig | None = Field(
        None,
        description="Train LoRA adapters; the reference is then the base with adapters disabled.",
    )

    @model_validator(mode="after")
    def _smoothing_needs_robust(self) -> DPOConfig:
        # TRL's sigmoid/ipo/hinge losses ignore label_smoothing; say so instead of dropping it.
        if self.label_smoothing > 0 and self.loss_type != "robust":
            raise ValueError(
                f"label_smoothing={self.label_smoothing} is only used by loss_type 'robust' "
                f"(label-noise robust DPO); loss_type {self.loss_type!r} would ignore it"
            )
        if self.soft_labels and self.loss_type != "sigmoid":
            raise ValueError(
                f"soft_labels is conservative DPO, a form of loss_type 'sigmoid'; loss_type "
                f"{self.loss_type!r} has no per-pair label"
            )
        if self.soft_labels and not (self.precompute_ref_log_probs or self.reference_cache):
            raise ValueError(
                "soft_labels reads the reference log-probs from the batch: set reference_cache "
                "or precompute_ref_log_probs"
            )
        return self


class KTOConfig(_MethodConfig):
    """KTO on unpaired rows: each pair's chosen answer is desirable, its rejected undesirable."""

    beta: float = Field(0.1, gt=0, description="Strength of the KL constraint to the reference.")
    desirable_weight: float = Field(1.0, gt=0, description="Loss weight of desirable rows.")
    undesirable_weight: float = Field(1.0, gt=0, description="Loss weight of undesirable rows.")
    precompute_ref_log_probs: bool = Field(
        False, description="Score the reference once before training instead of every step."
    )
    lora: LoraConfig | None = Field(
        None,
        description="Train LoRA adapters; the reference is then the base with adapters disabled.",
    )


class RewardConfig(_MethodConfig):
    """Bradley-Terry reward model on the preference pairs (TRL RewardTrainer)."""

    learning_rate: float = Field(1e-3, gt=0, description="Peak learning rate.")
    num_train_epochs: float = Field(2.0, gt=0, description="Epochs over the training split.")
    use_score_margin: bool = Field(
        False,
        description="Add a margin score_chosen - score_rejected to the loss where both scores "
        "are present (0 elsewhere).",
    )
    center_rewards_coefficient: float | None = Field(
        None,
        ge=0,
        description="Pull the mean reward towards 0 (Eisenstein et al. 2023); off if unset.",
    )
    ensemble_size: int = Field(
        1,
        ge=1,
        description="Reward models to train (k); above 1 an ensemble whose members differ by "
        "seed (seed + i) and, with ensemble_resample=bootstrap, by training rows.",
    )
    ensemble_resample: Literal["bootstrap", "seed"] = Field(
        "bootstrap",
        description="bootstrap: each member trains on a resample of the pairs (drawn with "
        "replacement); seed: every member on all pairs, differing by seed only.",
    )

    soft_labels: bool = Field(
        False,
        description="Train on each pair's preference probability p (alignment.methods."
        "soft_labels) with the soft Bradley-Terry loss -[p log s(d) + (1 - p) log s(-d)].",
    )
    min_label_margin: float = Field(
        0.05, ge=0, lt=0.5, description="With soft_labels: drop pairs with |p - 0.5| below this."
    )

    @model_validator(mode="after")
    def _one_use_of_the_scores(self) -> RewardConfig:
        if self.soft_labels and self.use_score_margin:
            raise ValueError(
                "soft_labels and use_score_margin both read score_chosen/score_rejected, as a "
                "probability and as a margin; choose one"
            )
        return self


class GuardConfig(_Strict):
    """Reward over-optimisation guard of PPO, RLOO and GRPO: held-out signals every eval_steps, a
    stop rule and the kept checkpoint chosen by the held-out signal."""

    enabled: bool = Field(False, description="Evaluate, record and apply the stop rule.")
    eval_steps: int = Field(10, ge=1, description="Evaluate every this many PPO steps (N).")
    eval_prompts: int = Field(
        32, ge=1, description="Held-out prompts per evaluation (the eval split's, else train's)."
    )
    signal: Literal["held_out_member", "held_out_reward_model", "ensemble_lower_bound"] = Field(
        "held_out_member",
        description="The held-out signal: the last ensemble member's score, that member left "
        "out of PPO's reward; the score of held_out_reward_model (trained on labels PPO never "
        "saw); or the ensemble's mean - std, which PPO partly optimises under "
        "reward_ensemble=uncertainty_weighted.",
    )
    held_out_reward_model: Path | list[Path] | None = Field(
        None,
        description="Reward model trained on held-out labels (signal=held_out_reward_model); or "
        "a list of them (say, trained on those labels with other seeds): the signal is then "
        "their mean score, so no single model's quirk decides which checkpoint is kept.",
    )
    patience: int = Field(
        3,
        ge=1,
        description="Stop after this many evaluations in a row with the proxy rising and the "
        "held-out signal falling (M).",
    )
    stop_rule: Literal["each_evaluation", "over_window"] = Field(
        "each_evaluation",
        description="How the proxy rising while the held-out signal falls for patience (M) "
        "evaluations is read: at each evaluation against the one before, or over the window "
        "(the last proxy above the one M back, every held-out value of the M below it).",
    )
    kl_budget: float | None = Field(
        None, gt=0, description="Stop once KL(policy || reference) per response exceeds this."
    )
    stop: bool = Field(True, description="End training when the rule fires (else only record).")
    keep: Literal["best", "last"] = Field(
        "best",
        description="Which policy the job saves: the evaluation with the best held-out signal "
        "within the KL budget, or the last step.",
    )
    record_samples: bool = Field(
        False,
        description="Write each evaluation's held-out prompts and responses to "
        "guard/samples-step-N-rank-R.jsonl (for scoring against a known truth, as the oracle "
        "task's gaming benchmark does).",
    )

    @model_validator(mode="after")
    def _held_out_model_given(self) -> GuardConfig:
        if self.signal == "held_out_reward_model" and not self.held_out_reward_model:
            raise ValueError(
                "signal=held_out_reward_model needs held_out_reward_model: a reward model "
                "trained on preference labels PPO does not train against"
            )
        return self


class PPOConfig(_MethodConfig):
    """PPO against a learned reward model: per-token KL to the reference, GAE, clipped losses.

    One step is one batch of rollouts (per_device_train_batch_size prompts per process) and
    ppo_epochs passes of updates over it.
    """

    learning_rate: float = Field(1e-4, gt=0, description="Policy learning rate.")
    lr_scheduler_type: Literal["constant"] = Field(
        "constant", description="PPO holds both rates constant over its steps."
    )
    value_learning_rate: float | None = Field(
        None, gt=0, description="Value model learning rate; the policy's when unset."
    )
    max_new_tokens: int = Field(16, ge=1, description="Longest sampled response in tokens.")
    temperature: float = Field(
        1.0,
        gt=0,
        description="Sampling temperature of the rollouts. Policy and reference log-probs are "
        "both taken at it, so away from 1 the KL penalised is between the tempered models.",
    )
    ppo_epochs: int = Field(4, ge=1, description="Update passes over each batch of rollouts.")
    mini_batch_size: int | None = Field(
        None,
        ge=1,
        description="Rollouts per update step; must divide per_device_train_batch_size; the "
        "whole batch when unset.",
    )
    gamma: float = Field(1.0, ge=0, le=1, description="Discount factor of GAE.")
    lam: float = Field(0.95, ge=0, le=1, description="GAE lambda (bias/variance trade-off).")
    clip_range: float = Field(0.2, gt=0, description="PPO clip range of the policy ratio.")
    clip_range_value: float = Field(0.2, gt=0, description="Clip range of the value update.")
    vf_coef: float = Field(0.1, ge=0, description="Weight of the value loss (logged total loss).")
    kl_coef: float = Field(
        0.05,
        ge=0,
        description="Initial weight of the per-token KL penalty in the reward, "
        "-kl_coef * (log pi - log pi_ref).",
    )
    kl_estimator: Literal["k1", "k2", "k3"] = Field(
        "k1",
        description="Estimator in the reward's KL penalty: k1 only. Its expected policy gradient "
        "is that of KL(policy || reference); k2 or k3 there are refused (see kl_metric and "
        "kl_loss_coef).",
    )
    kl_metric: Literal["k1", "k2", "k3"] = Field(
        "k1",
        description="Estimator of the logged `kl` per sequence, which the adaptive controller "
        "measures (Schulman's k1/k2/k3 of KL(policy || reference); k2 is biased).",
    )
    kl_loss_coef: float = Field(
        0.0,
        ge=0,
        description="Weight of a k3 loss term (GRPO style), kl_loss_coef * token mean of k3. "
        "Its gradient is that of the forward KL(reference || policy) per token, at the "
        "policy's own prefixes; off at 0.",
    )
    adaptive_kl: bool = Field(
        False, description="Adapt kl_coef towards target_kl (Ziegler et al. 2019)."
    )
    target_kl: float = Field(
        6.0, gt=0, description="Target KL per sequence of the adaptive controller."
    )
    kl_horizon: int = Field(
        10_000, ge=1, description="Horizon of the adaptive controller (rollouts)."
    )
    whiten_rewards: bool = Field(False, description="Whiten the per-token rewards before GAE.")
    missing_eos_penalty: float | None = Field(
        None, description="Subtract this from the score of responses that never end (off if unset)."
    )
    value_model_path: Path | None = Field(
        None,
        description="Initial value model (sequence classification); the reward model if unset.",
    )
    reward_ensemble: Literal["mean", "uncertainty_weighted", "worst_case"] = Field(
        "mean",
        description="With a reward-model ensemble, the reward PPO maximises (Coste et al. 2023): "
        "the members' mean, mean - uncertainty_penalty * std, or their minimum, each member "
        "normalised by its mean and std on the first batch of rollouts.",
    )
    uncertainty_penalty: float = Field(
        1.0, ge=0, description="lambda of reward_ensemble=uncertainty_weighted."
    )
    guard: GuardConfig = GuardConfig()

    @model_validator(mode="after")
    def _reward_penalty_is_k1(self) -> PPOConfig:
        # E[k grad log pi] is grad KL(pi || ref) for k1 only; for k3 it is grad KL(pi || ref) -
        # grad KL(ref || pi), which vanishes near the reference and can point away from it.
        if self.kl_estimator != "k1":
            raise ValueError(
                f"kl_estimator={self.kl_estimator!r}: only k1 may shape the reward, the only "
                "per-token penalty whose expected gradient is that of KL(policy || reference). "
                f"Use kl_metric: {self.kl_estimator} to log and control on it, or kl_loss_coef "
                "for a k3 loss term (it regularises KL(reference || policy))"
            )
        return self

    @model_validator(mode="after")
    def _mini_batches_cover_the_batch(self) -> PPOConfig:
        mini = self.mini_batch_size
        if mini is not None and self.per_device_train_batch_size % mini:
            raise ValueError(
                f"mini_batch_size={mini} does not divide per_device_train_batch_size="
                f"{self.per_device_train_batch_size}: every rollout must be used in each epoch"
            )
        return self


class RLOOConfig(_MethodConfig):
    """RLOO (TRL RLOOTrainer) against the learned reward model: critic-free, k samples a prompt."""

    learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate.")
    num_generations: int = Field(
        4, ge=2, description="Samples per prompt (the leave-one-out group)."
    )
    max_completion_length: int = Field(16, ge=1, description="Longest sampled response in tokens.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    beta: float = Field(
        0.05,
        ge=0,
        description="KL coefficient: TRL's RLOO subtracts beta * sum of k1 = log(pi / pi_ref) "
        "from each sample's reward, so it pulls towards KL(policy || reference).",
    )
    guard: GuardConfig = Field(
        GuardConfig(),
        description="Over-optimisation guard; the proxy is the reward model trained against "
        "(ensemble member 0); signal held_out_member or held_out_reward_model.",
    )


class GRPOConfig(RLOOConfig):
    """GRPO (TRL GRPOTrainer) against the learned reward model: group-normalised advantages."""

    beta: float = Field(
        0.0,
        ge=0,
        description="Weight of TRL's per-token k3 loss term (TRL default 0: no reference). As a "
        "loss its gradient is that of the forward KL(reference || policy), not of KL(policy || "
        "reference).",
    )


class TrainConfig(_Strict):
    """Which methods run, in order, and how."""

    methods: list[Literal["sft", "dpo", "reward", "ppo", "rloo", "grpo", "kto"]] = Field(
        ["sft", "dpo"], description="Stages in order."
    )
    sft: SFTConfig = SFTConfig()
    dpo: DPOConfig = DPOConfig()
    kto: KTOConfig = KTOConfig()
    reward: RewardConfig = RewardConfig()
    ppo: PPOConfig = PPOConfig()
    rloo: RLOOConfig = RLOOConfig()
    grpo: GRPOConfig = GRPOConfig()
    distributed: DistributedConfig = DistributedConfig()
