"""A CAI revision of a served answer a user rejected: the chosen side of a thumbs-down pair.

The answer is critiqued and revised under the constitution, as in the CAI SL phase
(``alignment.cai.critique``): each round draws a principle (seeded by the trace id, so a re-run
asks the same), asks for a critique, then for a revision of the current answer. The revision
is only an assumption of a better answer (nobody rated it), which the pair's kind says.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from alignment.cai.critique import critique_conversation, revision_conversation
from alignment.cai.generate import GenerationSettings, Generator
from alignment.constitution import Constitution


@dataclass
class Revision:
    text: str
    principles: list[str]


class ConstitutionReviser:
    """Critique-then-revise ``rounds`` times under ``constitution`` with ``generator``."""

    def __init__(
        self,
        generator: Generator,
        constitution: Constitution,
        settings: GenerationSettings,
        rounds: int = 1,
        few_shot: int = 1,
        seed: int = 0,
        model: str = "",
    ):
        from alignment.cai.critique import _few_shot

        self.generator, self.constitution, self.settings = generator, constitution, settings
        self.rounds, self.seed, self.model = rounds, seed, model
        self.shots = _few_shot(constitution, constitution.examples_for(few_shot))

    def revise(self, prompt: str, answer: str, key: str) -> Revision:
        """The revised answer ('' when a round gave none) and the principles it was revised under."""
        current, used = answer, []
        for r in range(self.rounds):
            principle = self.constitution.sample(random.Random(f"{self.seed}:feedback:{key}:{r}"))
            settings = replace(self.settings, seed=self.seed + 2 * r + 1)
            [critique] = self.generator.generate(
                [critique_conversation(self.shots, prompt, current, principle)], settings
            )
            [revision] = self.generator.generate(
                [revision_conversation(self.shots, prompt, current, principle, critique)],
                replace(settings, seed=settings.seed + 1),
            )
            used.append(principle.name)
            if not revision:
                return Revision("", used)
            current = revision
        return Revision(current, used)

    def provenance(self) -> dict:
        return {
            "constitution": self.constitution.name,
            "constitution_hash": self.constitution.hash,
            "reviser_model": self.model,
            "rounds": self.rounds,
        }


def open_reviser(cfg) -> ConstitutionReviser:
    """The reviser of a pipeline config: the CAI feedback model under the CAI constitution."""
    from alignment.cai.generate import LocalGenerator, load_model
    from alignment.constitution import load_constitution
    from alignment.errors import ConfigError

    cai = cfg.cai
    if cai.feedback_model is None:
        raise ConfigError("revising thumbs-down answers needs a model: set cai.feedback_model")
    return ConstitutionReviser(
        LocalGenerator(*load_model(cai.feedback_model, cfg.evaluation.device)),
        load_constitution(cai.constitution),
        GenerationSettings.from_config(cai, cai.sl_temperature),
        rounds=cai.revision_rounds,
        few_shot=cai.few_shot,
        seed=cai.seed,
        model=str(cai.feedback_model),
    )
