"""Where ``@champion`` lives: on the candidates' registered model, or on a production model.

Embedded, with one account, ``champion`` and ``previous`` are aliases of the registered model
that training registers candidates into (``registry.model_name``). With roles on an MLflow
server, moving an alias needs the same permission as registering a version, so the training
account could promote its own candidates. MLflow's documented answer is two registered models:
candidates in ``registry.model_name`` (the training account edits it) and a production model
(``registry.production_model``) that only the ops account may edit. Promotion copies the
candidate version into the production model (``MlflowClient.copy_model_version``) and moves
``champion`` there; the server refuses the copy to any other account.

Either way the platform speaks of champions by their *candidate* version number: a production
version carries the candidate version it copies in its ``candidate.version`` tag.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from alignment.errors import PermissionDenied
from alignment.registry import (
    CHAMPION,
    PREVIOUS,
    SOURCE_MODEL_TAG,
    SOURCE_TAG,
    current_alias_version,
    is_not_found,
    unreachable,
)


@dataclass(frozen=True)
class ChampionSlot:
    """The registered model that holds ``champion``/``previous`` for a use case's candidates."""

    candidates: str
    production: str | None = None

    @classmethod
    def of(cls, name: str, production: str | None) -> ChampionSlot:
        return cls(name, production or None)

    @property
    def model(self) -> str:
        """The registered model whose aliases are ``champion`` and ``previous``."""
        return self.production or self.candidates

    def holder(self, alias: str = CHAMPION) -> str | None:
        """The candidate version that holds ``alias`` (None when no version holds it)."""
        version = current_alias_version(self.model, alias)
        if version is None or self.production is None:
            return version
        return self._client().get_model_version(self.production, version).tags.get(SOURCE_TAG)

    def production_version(self, candidate: str) -> str | None:
        """The production version that copies candidate version ``candidate``, if one does."""
        from mlflow.exceptions import MlflowException

        try:
            versions = self._client().search_model_versions(f"name = '{self.production}'")
        except MlflowException as exc:
            if is_not_found(exc):
                return None
            raise unreachable(exc) from exc
        found = [
            int(v.version)
            for v in versions
            if v.tags.get(SOURCE_TAG) == str(candidate)
            and v.tags.get(SOURCE_MODEL_TAG) == self.candidates
        ]
        return str(max(found)) if found else None

    def point(self, alias: str, candidate: str, account: str | None) -> str:
        """Make ``alias`` name candidate version ``candidate``; return the version it is set on.

        In production mode the candidate is copied into the production model first (once: a
        version promoted again, after a rollback, reuses its copy).
        """
        client = self._client()
        target = str(candidate)
        if self.production is not None:
            with refused_as(account, self.production, "to promote or roll back"):
                copy = self.production_version(target)
                if copy is None:
                    copy = str(
                        client.copy_model_version(
                            f"models:/{self.candidates}/{target}", self.production
                        ).version
                    )
                    client.set_model_version_tag(self.production, copy, SOURCE_TAG, target)
                    client.set_model_version_tag(
                        self.production, copy, SOURCE_MODEL_TAG, self.candidates
                    )
                target = copy
        with refused_as(account, self.model, "to promote or roll back"):
            client.set_registered_model_alias(self.model, alias, target)
        return target

    def clear(self, alias: str, account: str | None) -> None:
        with refused_as(account, self.model, "to promote or roll back"):
            self._client().delete_registered_model_alias(self.model, alias)

    @staticmethod
    def _client():
        from mlflow import MlflowClient

        return MlflowClient()


def account() -> str | None:
    """The account this process authenticates to the MLflow server as (None: no credentials).

    It is what the server checked the request against, so it records who really moved an alias,
    whatever free-text actor the caller gave.
    """
    from mlflow.utils.credentials import read_mlflow_creds

    return read_mlflow_creds().username or None


def _permission_denied(exc: BaseException) -> bool:
    """True when the server refused the request for lack of permission (HTTP 403), also when
    MLflow wrapped that refusal in another error (``copy_model_version`` does)."""
    seen: BaseException | None = exc
    while seen is not None:
        if getattr(seen, "error_code", None) == "PERMISSION_DENIED":
            return True
        if "error code 403 " in str(seen):  # the REST client's words for the HTTP status
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@contextlib.contextmanager
def refused_as(account: str | None, model: str, what: str) -> Iterator[None]:
    """Turn the server's 403 on ``model`` into PermissionDenied naming account, model and need."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        if not _permission_denied(exc):
            raise
        import mlflow

        who = repr(account) if account else "anonymous (no MLFLOW_TRACKING_USERNAME)"
        raise PermissionDenied(
            f"MLflow at {mlflow.get_tracking_uri()} refused account {who}: {what}, it needs "
            f"EDIT (aliases) or MANAGE permission on registered model {model!r}. Run it with "
            "the ops account's credentials (MLFLOW_TRACKING_USERNAME/PASSWORD), or have an "
            "admin grant the permission (infra/mlflow/roles.py)"
        ) from exc


def champion_ref(ref: str, default_name: str, production: str | None) -> str:
    """``NAME@champion`` (or ``@previous``) of the candidates' model → the production model's.

    Any other reference, and every reference without a production model, is returned as is.
    """
    if production is None or "@" not in ref:
        return ref
    name, _, alias = ref.partition("@")
    if (name or default_name) == default_name and alias in (CHAMPION, PREVIOUS):
        return f"{production}@{alias}"
    return ref
