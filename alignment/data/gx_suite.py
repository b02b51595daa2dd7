"""The Great Expectations side of validation: the suite built in code, and one runner per ingest.

Each expectation carries its rule name in ``meta``, so the validator can map GX's unexpected
indexes back to the rows to quarantine.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any

import pandas as pd

from alignment.config import ValidationConfig


def build_suite(gx: Any, gxe: Any, cfg: ValidationConfig, notes: dict[str, str]) -> Any:
    """The preference-pair suite; ``notes`` gives each rule's meaning for Data Docs."""
    suite = gx.ExpectationSuite(name="preference_pairs")

    def add(rule: str, expectation: Any) -> None:
        expectation.meta = {"rule": rule, "notes": notes[rule]}
        suite.add_expectation(expectation)

    add("empty_prompt", gxe.ExpectColumnValuesToBeBetween(column="prompt_min_chars", min_value=1))
    add("empty_chosen", gxe.ExpectColumnValuesToBeBetween(column="chosen_chars", min_value=1))
    add("empty_rejected", gxe.ExpectColumnValuesToBeBetween(column="rejected_chars", min_value=1))
    add(
        "chosen_equals_rejected",
        gxe.ExpectColumnValuesToBeInSet(column="chosen_equals_rejected", value_set=[False]),
    )
    add("prompt_roles", gxe.ExpectColumnValuesToBeInSet(column="prompt_roles_ok", value_set=[True]))
    add(
        "chosen_roles",
        gxe.ExpectColumnValuesToBeInSet(column="chosen_role", value_set=["assistant"]),
    )
    add(
        "rejected_roles",
        gxe.ExpectColumnValuesToBeInSet(column="rejected_role", value_set=["assistant"]),
    )
    add(
        "too_long",
        gxe.ExpectColumnValuesToBeBetween(column="max_turn_chars", max_value=cfg.max_chars),
    )
    add(
        "control_characters",
        gxe.ExpectColumnValuesToBeInSet(column="control_characters", value_set=[False]),
    )
    add("bad_score", gxe.ExpectColumnValuesToBeInSet(column="scores_ok", value_set=[True]))
    add(
        "score_order",
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="score_chosen",
            column_B="score_rejected",
            or_equal=True,
            ignore_row_if="either_value_is_missing",
        ),
    )
    add("duplicate", gxe.ExpectColumnValuesToBeInSet(column="duplicate", value_set=[False]))
    add(
        "near_duplicate",
        gxe.ExpectColumnValuesToBeInSet(column="near_duplicate", value_set=[False]),
    )
    if cfg.tokenizer:
        add(
            "too_many_tokens",
            gxe.ExpectColumnValuesToBeBetween(column="pair_tokens", max_value=cfg.max_tokens),
        )
        add(
            "identical_after_truncation",
            gxe.ExpectColumnValuesToBeInSet(column="identical_after_truncation", value_set=[False]),
        )
    return suite


def _import_gx() -> None:
    """Import Great Expectations (seconds of pure import work) ahead of its first use."""
    # a failure here is left to the import where GX is used, which reports it
    with contextlib.suppress(Exception):
        import great_expectations.expectations  # noqa: F401
        from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: F401


def start_gx_import() -> threading.Thread:
    """Import GX on a thread while the first chunk is read; ``join`` before using it."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    # the readers' own lazy import, done first so the two threads never wait on each other
    import pyarrow.json  # noqa: F401

    thread = threading.Thread(target=_import_gx, name="gx-import", daemon=True)
    thread.start()
    return thread


class GXRunner:
    """One ephemeral GX context, suite and checkpoint, run once per chunk."""

    def __init__(self, cfg: ValidationConfig, docs_dir: Path | None, notes: dict[str, str]):
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        import great_expectations as gx  # slow (3-5 s): imported only when validating
        import great_expectations.expectations as gxe
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.docs_dir = docs_dir
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(
            globally=False, metric_calculations=False
        )
        asset = self.context.data_sources.add_pandas("preferences").add_dataframe_asset("pairs")
        batch = asset.add_batch_definition_whole_dataframe("chunk")
        suite = self.context.suites.add(build_suite(gx, gxe, cfg, notes))
        definition = self.context.validation_definitions.add(
            gx.ValidationDefinition(name="preference_pairs", data=batch, suite=suite)
        )
        if docs_dir is not None:
            self.context.add_data_docs_site(
                "alignment",
                {
                    "class_name": "SiteBuilder",
                    "store_backend": {
                        "class_name": "TupleFilesystemStoreBackend",
                        # GX refuses a relative folder (as `data ingest --out build/x` gives)
                        "base_directory": str(Path(docs_dir).resolve()),
                    },
                    "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                },
            )
        self.checkpoint = self.context.checkpoints.add(
            gx.Checkpoint(
                name="ingest",
                validation_definitions=[definition],
                actions=[],
                result_format={"result_format": "COMPLETE"},
            )
        )

    def run(self, flat: pd.DataFrame) -> tuple[dict[str, list[int]], list[dict]]:
        """Failing row positions per rule, and one result per expectation, for one chunk."""
        outcome = self.checkpoint.run(batch_parameters={"dataframe": flat})
        (validation,) = outcome.run_results.values()
        failing: dict[str, list[int]] = {}
        results = []
        for res in validation.results:
            rule = res.expectation_config.meta["rule"]
            if res.exception_info and res.exception_info.get("raised_exception"):
                raise RuntimeError(
                    f"GX expectation for rule {rule!r} crashed: {res.exception_info}"
                )
            indexes = [int(i) for i in res.result.get("unexpected_index_list") or []]
            failing[rule] = indexes
            results.append(
                {
                    "rule": rule,
                    "expectation": res.expectation_config.type,
                    "success": bool(res.success),
                    "unexpected_count": len(indexes),
                }
            )
        return failing, results

    def build_docs(self) -> Path | None:
        """Data Docs over every chunk's validation result."""
        if self.docs_dir is None:
            return None
        self.context.build_data_docs(site_names=["alignment"])
        docs = self.docs_dir / "index.html"
        return docs if docs.is_file() else None
