"""The policy endpoint: answers prompts, records each exchange as an MLflow trace, takes feedback.

A thin stdlib HTTP server over the registered pyfunc model rather than ``mlflow models serve``:
MLflow's scoring server has no route for feedback and no shadow model, and its process owns the
model, so tracing and feedback would need a second service anyway.

Threads serve requests, but answers run one at a time under the endpoint's work lock: a
generation, then the writes and read-back of its trace, then the next request's (or a shadow
answer's). Torch on CPU gains nothing from two generations at once, and letting trace writes run
beside a generation cost far more than the writes themselves: under 20 clients, request threads
writing at once waited on SQLite's lock for many times their CPU time, and took the GIL and a
core from the generation in between. In turn, each request's tracing adds only its own CPU time,
and a request still returns only after its trace is stored and read back. Feedback (a read and
a small write) takes its own lock, one at a time, so a thumbs-up does not wait for generations
and the store has at most two writers. See also ``quiet_omp_workers``.

Routes: ``GET /health``, ``POST /respond`` and ``POST /feedback`` (JSON in, JSON out). With
``ALIGNMENT_SERVE_TOKEN`` set, the POST routes need ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from alignment.serve.config import ServeConfig

log = logging.getLogger(__name__)

TOKEN_ENV = "ALIGNMENT_SERVE_TOKEN"
WAIT_POLICY_ENV = "OMP_WAIT_POLICY"
MAX_BODY_BYTES = 1 << 20  # a request body is read into memory whole

# trace tags (searchable, e.g. "tags.`alignment.role` = 'request'")
ROLE = "alignment.role"  # request | shadow
MODEL = "alignment.model"
VERSION = "alignment.model_version"
ALIAS = "alignment.alias"
CONSENT = "alignment.consent"  # "true" when the user agreed to training use of the exchange
AB = "alignment.ab"
SHADOW_OF = "alignment.shadow_of"  # on a shadow trace: the request trace it shadows
SHADOW_TRACE = "alignment.shadow_trace"  # on a request trace: its shadow's trace id
RATING = "user_rating"  # feedback: True for thumbs up, False for thumbs down
CHOICE = "ab_choice"  # feedback: "a" or "b"


class BadRequest(ValueError):
    """A request the client must change; the message names the field. HTTP 400."""


class UnknownTrace(LookupError):
    """Feedback names a trace this endpoint did not record. HTTP 404."""


class NotRecorded(RuntimeError):
    """The answer's trace did not reach the tracking store; nothing is returned unrecorded. 503."""


@dataclass
class Policy:
    """One registered version, loaded, with the lock its generation takes."""

    name: str
    version: str
    alias: str
    chat: Any  # alignment.serving.ChatModel
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, prompt: str, params: dict):
        with self.lock:
            return self.chat.answer(prompt, params)


def load_policy(ref: str, default_name: str) -> Policy:
    """``NAME@alias`` (or ``NAME/version``) loaded through MLflow, pinned to the version it names now."""
    import mlflow

    from alignment import registry

    name, version = registry.resolve_ref(ref, default_name)
    alias = ref.partition("@")[2]
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    return Policy(name, version, alias, model.unwrap_python_model())


def _text(value: Any, what: str, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise BadRequest(f"{what!r} must be a non-empty string")
    return value


def _flag(body: dict, key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise BadRequest(f"{key!r} must be true or false")
    return value


class Endpoint:
    """What the routes do, without HTTP: answer (and shadow), record, attach feedback."""

    def __init__(self, policy: Policy, cfg: ServeConfig, shadow: Policy | None = None):
        self.policy, self.cfg, self.shadow = policy, cfg, shadow
        self.counts = {
            "requests": 0,
            "feedback": 0,
            "shadowed": 0,
            "shadow_skipped": 0,
            "unrecorded": 0,
        }
        self._lock = threading.Lock()  # counts and the shadow credit
        self._work = threading.Lock()  # an answer: its generation, then its trace's writes
        self._feedback = threading.Lock()  # feedback's read and write, one at a time
        self._shadow_credit = 0.0
        self._queue: queue.Queue = queue.Queue(maxsize=cfg.shadow_queue)
        self._worker: threading.Thread | None = None
        if shadow is not None and cfg.shadow_share > 0:
            self._worker = threading.Thread(target=self._shadow_loop, name="shadow", daemon=True)
            self._worker.start()

    def _kept(self, text: str, consent: bool) -> str | None:
        """What a trace keeps of ``text`` under the content setting."""
        if consent or self.cfg.content == "full":
            return text
        if self.cfg.content == "hash":
            return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
        return None

    def _check_stored(self, trace_id: str, role: str, spans: int) -> None:
        """Read the trace back: MLflow's exporter only logs a warning when a write fails.

        Spans and the trace's info (where the tags live) are written separately: check both.
        """
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        try:
            trace = MlflowClient().get_trace(trace_id, display=False)
            stored = len(trace.data.spans) if trace.info.tags.get(ROLE) == role else 0
        except MlflowException:
            stored = 0
        if stored != spans:
            with self._lock:
                self.counts["unrecorded"] += 1
            raise NotRecorded(f"trace {trace_id} was not stored ({stored} of {spans} spans)")

    def _tags(self, policy: Policy, role: str, consent: bool, ab: bool) -> dict[str, str]:
        return {
            ROLE: role,
            MODEL: policy.name,
            VERSION: policy.version,
            ALIAS: policy.alias,
            CONSENT: str(consent).lower(),
            AB: str(ab).lower(),
        }

    def _generate(self, policy: Policy, prompt: str, params: dict, consent: bool):
        """One generation as a child span with its latency and token counts."""
        import mlflow
        from mlflow.entities import SpanType
        from mlflow.tracing.constant import SpanAttributeKey

        with mlflow.start_span(f"generate {policy.name}/{policy.version}", SpanType.LLM) as span:
            start = time.perf_counter()
            answer = policy.answer(prompt, params)
            latency_ms = (time.perf_counter() - start) * 1000
            span.set_outputs({"response": self._kept(answer.text, consent)})
            span.set_attributes(
                {
                    "latency_ms": latency_ms,
                    "params": params,
                    SpanAttributeKey.CHAT_USAGE: {
                        "input_tokens": answer.prompt_tokens,
                        "output_tokens": answer.completion_tokens,
                        "total_tokens": answer.prompt_tokens + answer.completion_tokens,
                    },
                }
            )
        return answer

    def respond(self, body: dict) -> dict:
        """Answer ``prompt`` (two sampled answers when ``ab``); the trace id comes back for feedback."""
        import mlflow

        prompt = _text(body.get("prompt"), "prompt")
        consent, ab = _flag(body, "consent"), _flag(body, "ab")
        limit = body.get("max_new_tokens", self.cfg.max_new_tokens)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise BadRequest("'max_new_tokens' must be a positive integer")
        params = {"max_new_tokens": min(limit, self.cfg.max_new_tokens)}
        if ab:
            params["temperature"] = self.cfg.ab_temperature
        with self._work:
            with mlflow.start_span("respond", "CHAIN") as root:
                root.set_inputs({"prompt": self._kept(prompt, consent)})
                answers = [
                    self._generate(self.policy, prompt, params, consent)
                    for _ in range(2 if ab else 1)
                ]
                texts = [a.text for a in answers]
                kept = [self._kept(t, consent) for t in texts]
                root.set_outputs({"responses": kept} if ab else {"response": kept[0]})
                root.set_attributes(
                    {
                        "prompt_tokens": answers[0].prompt_tokens,
                        "completion_tokens": sum(a.completion_tokens for a in answers),
                    }
                )
                mlflow.update_current_trace(tags=self._tags(self.policy, "request", consent, ab))
                trace_id = root.trace_id
            self._check_stored(trace_id, "request", 1 + len(answers))
        with self._lock:
            self.counts["requests"] += 1
        self._maybe_shadow(trace_id, prompt, params, consent, ab)
        reply = {"trace_id": trace_id, "model": self.policy.name, "version": self.policy.version}
        reply.update({"responses": texts} if ab else {"response": texts[0]})
        return reply

    def _maybe_shadow(self, trace_id: str, prompt: str, params: dict, consent: bool, ab: bool):
        if self._worker is None or ab:  # an A/B request already compares two answers
            return
        with self._lock:
            # a running credit takes exactly the configured share, evenly spread
            self._shadow_credit += self.cfg.shadow_share
            if self._shadow_credit < 1:
                return
            self._shadow_credit -= 1
            try:
                self._queue.put_nowait((trace_id, prompt, params, consent))
            except queue.Full:
                self.counts["shadow_skipped"] += 1

    def _shadow_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self._answer_shadow(*item)
            except Exception:  # a failing shadow never takes the endpoint down
                log.exception("shadow answer for trace %s failed", item[0])
            finally:
                self._queue.task_done()

    def _answer_shadow(self, trace_id: str, prompt: str, params: dict, consent: bool) -> None:
        import mlflow

        assert self.shadow is not None
        with self._work:
            with mlflow.start_span("shadow", "CHAIN") as root:
                root.set_inputs({"prompt": self._kept(prompt, consent)})
                answer = self._generate(self.shadow, prompt, params, consent)
                root.set_outputs({"response": self._kept(answer.text, consent)})
                tags = self._tags(self.shadow, "shadow", consent, False)
                mlflow.update_current_trace(tags={**tags, SHADOW_OF: trace_id})
                shadow_id = root.trace_id
            self._check_stored(shadow_id, "shadow", 2)
            mlflow.set_trace_tag(trace_id, SHADOW_TRACE, shadow_id)
        with self._lock:
            self.counts["shadowed"] += 1

    def feedback(self, body: dict) -> dict:
        """Attach a thumbs up/down (``rating``) or an A/B ``choice`` to the trace it names."""
        import mlflow
        from mlflow.entities import AssessmentSource

        trace_id = _text(body.get("trace_id"), "trace_id")
        rating, choice = body.get("rating"), body.get("choice")
        comment = _text(body.get("comment"), "comment", required=False)
        if (rating is None) == (choice is None):
            raise BadRequest("give exactly one of 'rating' ('up'|'down') and 'choice' ('a'|'b')")
        if rating is not None and rating not in ("up", "down"):
            raise BadRequest(f"'rating' must be 'up' or 'down', not {rating!r}")
        if choice is not None and choice not in ("a", "b"):
            raise BadRequest(f"'choice' must be 'a' or 'b', not {choice!r}")
        source = AssessmentSource(source_type="HUMAN", source_id="user")
        if rating is not None:
            name, value = RATING, rating == "up"
        else:
            name, value = CHOICE, choice
        with self._feedback:
            trace = mlflow.get_trace(trace_id, silent=True)
            if trace is None or trace.info.tags.get(ROLE) != "request":
                raise UnknownTrace(f"no answer of this endpoint has trace id {trace_id!r}")
            if choice is not None and trace.info.tags.get(AB) != "true":
                raise BadRequest(f"'choice' needs an A/B answer; trace {trace_id} has one response")
            made = mlflow.log_feedback(
                trace_id=trace_id, name=name, value=value, source=source, rationale=comment
            )
        with self._lock:
            self.counts["feedback"] += 1
        return {"trace_id": trace_id, "assessment_id": made.assessment_id}

    def close(self) -> None:
        """Finish every queued shadow answer (nothing accepted is dropped), then stop."""
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join()
            self._worker = None


class _Handler(BaseHTTPRequestHandler):
    endpoint: Endpoint  # set on the subclass that make_server builds
    token: str | None = None
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # client addresses identify users: not logged
        pass

    def _reply(self, status: HTTPStatus, payload: dict) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path != "/health":
            return self._reply(HTTPStatus.NOT_FOUND, {"error": f"no route {self.path}"})
        policy = self.endpoint.policy
        shadow = self.endpoint.shadow
        self._reply(
            HTTPStatus.OK,
            {
                "status": "ok",
                "model": policy.name,
                "version": policy.version,
                "alias": policy.alias,
                "shadow": f"{shadow.name}/{shadow.version}" if shadow else None,
                "counts": dict(self.endpoint.counts),
                "runtime": runtime(),
            },
        )

    def do_POST(self):
        routes = {"/respond": self.endpoint.respond, "/feedback": self.endpoint.feedback}
        route = routes.get(self.path)
        if route is None:
            return self._reply(HTTPStatus.NOT_FOUND, {"error": f"no route {self.path}"})
        if self.token is not None:
            given = self.headers.get("Authorization", "").encode("utf-8")
            if not hmac.compare_digest(given, f"Bearer {self.token}".encode()):
                self.close_connection = True  # the unread body must not become a next request
                return self._reply(HTTPStatus.UNAUTHORIZED, {"error": "needs a bearer token"})
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self.close_connection = True
            return self._reply(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                {"error": f"the body must have a Content-Length of at most {MAX_BODY_BYTES}"},
            )
        try:
            body = json.loads(self.rfile.read(length) or b"null")
            if not isinstance(body, dict):
                raise BadRequest("the body must be a JSON object")
            self._reply(HTTPStatus.OK, route(body))
        except (BadRequest, json.JSONDecodeError, UnicodeDecodeError) as exc:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        except UnknownTrace as exc:
            self._reply(HTTPStatus.NOT_FOUND, {"error": str(exc)})
        except NotRecorded as exc:
            self._reply(HTTPStatus.SERVICE_UNAVAILABLE, {"error": f"not answered: {exc}"})
        except Exception as exc:
            log.exception("%s failed", self.path)
            self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(exc).__name__}"})


def quiet_omp_workers() -> None:
    """Make torch's OpenMP workers sleep at once when they wait, unless ``OMP_WAIT_POLICY`` is set.

    Call before torch is imported (OpenMP reads it once). GNU OpenMP's workers otherwise spin
    at every barrier while a process owns at most as many OpenMP threads as cores, which is the
    endpoint's case: one generation at a time. Then anything else runnable (the store's writes,
    HTTP, the clients, other processes) takes a core from a spinning team, and each barrier
    waits out a scheduler slice. (GNU OpenMP throttles the spinning only in a process with more
    OpenMP threads than cores, as one where many threads each generated.)
    """
    import os
    import sys

    if "torch" in sys.modules and WAIT_POLICY_ENV not in os.environ:
        log.warning("torch is already imported: %s=PASSIVE comes too late", WAIT_POLICY_ENV)
    os.environ.setdefault(WAIT_POLICY_ENV, "PASSIVE")


def runtime() -> dict[str, Any]:
    """The CPU settings generation runs under, for ``/health`` (and a benchmark's like-with-like)."""
    import os

    import torch

    return {
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get(WAIT_POLICY_ENV),
    }


def trace_to(ws, experiment: str) -> str:
    """Send this process's traces to ``experiment`` of the workspace store, written synchronously."""
    import os

    import mlflow

    from alignment import registry

    # a trace id handed to a client must already be stored when its feedback arrives, and the
    # asynchronous exporter drops traces when its queue is full: export before answering
    os.environ["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"
    mlflow.tracing.reset()  # the exporter reads that setting when it is built
    experiment_id = registry.connect(ws, experiment)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def open_endpoint(
    ws, cfg: ServeConfig, ref: str, default_name: str, shadow_ref: str | None = None
) -> Endpoint:
    """Trace to ``cfg.experiment`` of the workspace store; load the policy and the shadow."""
    trace_to(ws, cfg.experiment)
    policy = load_policy(ref, default_name)
    shadow = load_policy(shadow_ref, default_name) if shadow_ref else None
    return Endpoint(policy, cfg, shadow)


def check_exposure(host: str, token: str | None) -> None:
    """Without a token, listen on loopback only: users' prompts never reach an open port."""
    import ipaddress

    from alignment.errors import ConfigError

    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        loopback = False
    if token is None and not loopback:
        raise ConfigError(f"serve.host={host} is not loopback: set {TOKEN_ENV} to serve there")


def make_server(
    endpoint: Endpoint, host: str, port: int, token: str | None = None
) -> ThreadingHTTPServer:
    """A threaded HTTP server for ``endpoint``; closing it waits for requests in flight."""
    check_exposure(host, token)
    handler = type("Handler", (_Handler,), {"endpoint": endpoint, "token": token})
    server_class = type("Server", (ThreadingHTTPServer,), {"request_queue_size": 128})
    server = server_class((host, port), handler)  # the default backlog of 5 resets bursts
    server.daemon_threads = False  # server_close joins them: no answer is cut off untraced
    server.block_on_close = True
    return server
