"""Typed config of the data-quality checks beyond row rules (the ``quality:`` section)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NearDuplicateConfig(_Strict):
    """MinHash/LSH near-duplicates, within a data version and against every earlier one."""

    enabled: bool = Field(True, description="Look for near-duplicate prompts and pairs.")
    prompt_threshold: float | None = Field(
        0.8,
        gt=0,
        le=1,
        description="Estimated Jaccard similarity of two prompts' word shingles at which they "
        "form a group (null: no prompt check).",
    )
    pair_threshold: float | None = Field(
        0.8,
        gt=0,
        le=1,
        description="Same, over the whole pair (prompt, chosen and rejected); null: no pair check.",
    )
    prompt_policy: Literal["keep_one", "flag"] = Field(
        "flag",
        description="keep_one: quarantine every row of a prompt that nearly repeats an earlier "
        "one; flag: keep them, report the group and split it as one prompt.",
    )
    pair_policy: Literal["keep_one", "flag"] = Field(
        "flag", description="keep_one: quarantine a pair that nearly repeats an earlier pair."
    )
    shingle_words: int = Field(3, ge=1, le=8, description="Words per shingle.")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations.")
    seed: int = Field(1, ge=0, description="MinHash seed (fixed, so versions compare).")
    across_versions: bool = Field(
        True, description="Also compare with the accepted rows of every earlier version."
    )
    report_groups: int = Field(
        200, ge=0, description="Groups listed with their members in the report (all are counted)."
    )


class DriftThresholds(_Strict):
    """Largest allowed distance per measure (null: reported, never past)."""

    prompt_length: float | None = Field(0.3, ge=0, le=1, description="KS distance.")
    response_length: float | None = Field(0.3, ge=0, le=1, description="KS distance.")
    chosen_longer: float | None = Field(
        0.15, ge=0, le=1, description="Change in the share of pairs where chosen is longer."
    )
    score_margin: float | None = Field(0.3, ge=0, le=1, description="KS distance.")
    script: float | None = Field(0.2, ge=0, le=1, description="Total variation distance.")
    turns: float | None = Field(0.2, ge=0, le=1, description="Total variation distance.")
    content: float | None = Field(
        0.6, ge=0, le=1, description="Jensen-Shannon distance of hashed word n-grams."
    )


class DriftConfig(_Strict):
    """Drift of a new data version from the one the champion was trained on."""

    enabled: bool = Field(True, description="Measure drift in the retrain flow.")
    on_exceed: Literal["stop", "warn"] = Field(
        "warn",
        description="stop: the retrain stops before training, naming the measure; warn: it "
        "trains and the warning is in its log, artifact and notification.",
    )
    thresholds: DriftThresholds = DriftThresholds()


class AnnotatorConfig(_Strict):
    """Agreement of annotators who judged the same pairs (rows with ``meta.annotator``)."""

    min_agreement: float = Field(
        0.6,
        ge=0,
        le=1,
        description="Flag an annotator who agrees with the majority of the others less often.",
    )
    min_items: int = Field(
        5, ge=1, description="Judge an annotator only on at least this many shared items."
    )


class QualityConfig(_Strict):
    """Data-quality checks that look at the set, not the row."""

    near_duplicates: NearDuplicateConfig = NearDuplicateConfig()
    drift: DriftConfig = DriftConfig()
    annotators: AnnotatorConfig = AnnotatorConfig()
    aggregate_repeats: Literal["soft", "keep", "majority"] = Field(
        "soft",
        description="The same pair judged several times (either order): soft: one pair with "
        "score_chosen = the share of judgements preferring the chosen response (the soft label "
        "the DPO and reward losses read); majority: one pair oriented by the majority, scores "
        "unchanged; keep: every accepted row as it is.",
    )
