"""The MLflow pyfunc wrapper that makes a registered policy generate text.

``mlflow.pyfunc.load_model("models:/NAME@champion").predict(df, params={...})`` and
``mlflow models serve`` both go through ``ChatModel``; generation parameters are declared
in the signature so MLflow passes them through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mlflow.pyfunc

GENERATION_PARAMS: dict[str, Any] = {
    "max_new_tokens": 64,
    "temperature": 0.0,
    "top_p": 1.0,
}


@dataclass(frozen=True)
class Answer:
    """A generated response and its size in tokens (prompt as templated, completion as sampled)."""

    text: str
    prompt_tokens: int
    completion_tokens: int


def signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    params = [
        ParamSpec("max_new_tokens", "long", GENERATION_PARAMS["max_new_tokens"]),
        ParamSpec("temperature", "double", GENERATION_PARAMS["temperature"]),
        ParamSpec("top_p", "double", GENERATION_PARAMS["top_p"]),
    ]
    return ModelSignature(
        inputs=Schema([ColSpec("string")]),  # a list of prompts, or a one-column frame
        outputs=Schema([ColSpec("string", "response")]),
        params=ParamSchema(params),
    )


class ChatModel(mlflow.pyfunc.PythonModel):
    """Loads the checkpoint artifact; answers each prompt as one user turn."""

    def load_context(self, context):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = context.artifacts["checkpoint"]
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True)
        self.model.eval()

    def predict(self, context, model_input, params: dict | None = None):
        import pandas as pd

        if isinstance(model_input, pd.DataFrame):
            column = "prompt" if "prompt" in model_input.columns else model_input.columns[0]
            prompts = [str(p) for p in model_input[column]]
        else:
            prompts = [str(p) for p in model_input]
        return pd.DataFrame({"response": [self.answer(p, params).text for p in prompts]})

    def answer(self, prompt: str, params: dict | None = None) -> Answer:
        """One user turn answered, with the token counts a server records."""
        import torch

        merged = {**GENERATION_PARAMS, **(params or {})}
        sample = float(merged["temperature"]) > 0
        enc = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        with torch.no_grad():
            out = self.model.generate(
                **enc,
                max_new_tokens=int(merged["max_new_tokens"]),
                do_sample=sample,
                temperature=float(merged["temperature"]) if sample else None,
                top_p=float(merged["top_p"]) if sample else None,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new_tokens = out[0, enc["input_ids"].shape[1] :]
        return Answer(
            self.tokenizer.decode(new_tokens, skip_special_tokens=True),
            int(enc["input_ids"].shape[1]),
            int(new_tokens.shape[0]),
        )
