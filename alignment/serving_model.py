"""Models-from-code entry for MLflow: MLflow runs this file when it loads a registered policy."""

from mlflow.models import set_model

from alignment.serving import ChatModel

set_model(ChatModel())
