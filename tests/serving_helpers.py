"""A served endpoint for the tests: ``alignment serve`` in a subprocess (imported by name)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


class Server:
    """``alignment serve`` in a subprocess on a free loopback port."""

    def __init__(self, root: Path, log: Path, *args: str):
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env.update({"HF_HUB_OFFLINE": "1", "MLFLOW_DISABLE_TELEMETRY": "true"})
        env["ALIGNMENT_SERVE_TOKEN"] = self.token = "s3cret"
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "alignment", "serve", *args, "--workspace", str(root),
             "--port", "0"],
            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 180
        while True:
            found = re.search(r"on (http://127\.0\.0\.1:\d+)", log.read_text())
            if found:
                self.base = found.group(1)
                return
            assert self.proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)

    def post(self, route: str, body: dict, token: str | None = None) -> tuple[int, dict]:
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {token or self.token}",
        }
        request = urllib.request.Request(self.base + route, json.dumps(body).encode(), headers)
        try:
            with urllib.request.urlopen(request, timeout=120) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def get(self, route: str) -> dict:
        with urllib.request.urlopen(self.base + route, timeout=60) as resp:
            return json.loads(resp.read())

    def oversized(self) -> int:
        """Announce a body over the limit, send none: the answer must come before it is read."""
        import http.client

        host, port = self.base.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        connection.putrequest("POST", "/respond")
        connection.putheader("Authorization", f"Bearer {self.token}")
        connection.putheader("Content-Length", str(64 << 20))
        connection.endheaders()
        status = connection.getresponse().status
        connection.close()
        return status

    def stop(self) -> str:
        self.proc.terminate()
        assert self.proc.wait(timeout=120) == 0, self.log.read_text()[-3000:]
        return self.log.read_text()


def register_champion_and_challenger(
    experiment_id: str, name: str, checkpoints: tuple, data_version: str
) -> None:
    """Two registered versions (the champion-to-be and a challenger) whose evaluation passes the
    demo gate, as a pipeline run would have left them."""
    import mlflow

    from alignment import registry

    for checkpoint in checkpoints:
        with mlflow.start_run(experiment_id=experiment_id):
            mlflow.log_metrics(
                {"eval/reward_accuracy": 0.6, "eval/reward_margin_mean": 0.1,
                 "eval/harmful_compliance_rate": 0.0, "eval/refusal_rate": 0.0,
                 "eval/unique_response_rate": 1.0, "eval/distinct_2": 0.6,
                 "eval/response_words_mean": 12.0, "eval/sycophancy_shift": 0.0}
            )  # fmt: skip
            registry.register_policy(checkpoint, name, {"data_version": data_version})
