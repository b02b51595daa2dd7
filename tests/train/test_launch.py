"""Real training jobs: 2 processes, ZeRO-2 on CPU, through launch_training, on a fixed tiny task."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from preference_task import preference_rows, write_rows

from alignment.config import PipelineConfig
from alignment.errors import ConfigError, TrainingFailed
from alignment.train.launch import build_command, format_progress, job_environment, launch_training


@pytest.fixture(scope="module")
def train_parquet(tmp_path_factory) -> Path:
    return write_rows(tmp_path_factory.mktemp("prefs") / "train.parquet", preference_rows())


@pytest.fixture(scope="module")
def heldout_parquet(tmp_path_factory) -> Path:
    return write_rows(tmp_path_factory.mktemp("prefs") / "eval.parquet", preference_rows(40, True))


def _config(**method) -> PipelineConfig:
    """2 processes, ZeRO-2, CPU; 64 rows x 2 epochs at batch 4 per process = 16 steps."""
    return PipelineConfig.model_validate(
        {
            # a workspace of the test's own: the DPO reference cache lives there
            "workspace": {"root": tempfile.mkdtemp(prefix="ws-")},
            "train": {
                "sft": {"learning_rate": 3e-3, "num_train_epochs": 2, **method},
                "dpo": {"learning_rate": 1e-3, "num_train_epochs": 2, **method},
                "distributed": {"num_processes": 2, "zero_stage": 2, "device": "cpu"},
            },
        }
    )


def _assert_loadable(model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    assert tokenizer.chat_template
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 3 plus 4?"}],
        add_generation_prompt=True,
        return_dict=False,
    )
    assert model.generate(input_ids=__import__("torch").tensor([ids]), max_new_tokens=3).shape[
        1
    ] > len(ids)


@pytest.mark.slow
@pytest.mark.heavy  # the e2e pipeline runs the same 2-process SFT job in the default suite
def test_sft_job_lowers_the_loss_and_saves_a_loadable_model(
    tiny_model_dir, train_parquet, tmp_path
):
    events: list[dict] = []
    result = launch_training(
        "sft", _config(), tiny_model_dir, train_parquet, tmp_path / "sft", on_progress=events.append
    )

    assert result.method == "sft"
    assert result.output_dir == tmp_path / "sft" / "model"
    assert result.metrics["global_step"] == 16
    assert "train_runtime" in result.metrics
    losses = [h["loss"] for h in result.history if "loss" in h]
    assert len(losses) == 16
    assert losses[-1] < losses[0] - 0.5, losses
    # progress reached the caller once per logging step, with a human line
    assert [e["step"] for e in events] == list(range(1, 17))
    assert "step 16/16" in events[-1]["message"] and "loss" in events[-1]["message"]
    assert events[-1]["tokens_per_second"] > 0
    assert (tmp_path / "sft" / "job.json").is_file()
    assert json.loads((tmp_path / "sft" / "history.json").read_text()) == result.history
    assert "@@progress" in result.log_path.read_text()
    _assert_loadable(result.output_dir)


@pytest.mark.slow
@pytest.mark.heavy  # the e2e pipeline runs the same 2-process DPO job in the default suite
def test_dpo_job_separates_chosen_from_rejected(
    tiny_model_dir, train_parquet, heldout_parquet, tmp_path
):
    result = launch_training(
        "dpo",
        _config(),
        tiny_model_dir,
        train_parquet,
        tmp_path / "dpo",
        eval_path=heldout_parquet,
        on_progress=lambda e: None,
    )

    steps = [h for h in result.history if "rewards/margins" in h]
    assert len(steps) == 16
    assert steps[-1]["rewards/margins"] > steps[0]["rewards/margins"] + 0.3, steps
    assert steps[-1]["loss"] < 0.6931  # below log 2, the loss of an undecided policy
    assert result.wall_seconds > 0
    # evaluated once at the end, on prompts it never trained on (an unmoved policy scores 0):
    # the evasive half is learned, the wrong sums stay near chance for this tiny model
    evaluation = {k: v for k, v in result.metrics.items() if k.startswith("eval_rewards")}
    assert evaluation["eval_rewards/accuracies"] >= 0.65, evaluation
    assert evaluation["eval_rewards/margins"] > 0.2, evaluation
    _assert_loadable(result.output_dir)


class _Interrupt(Exception):
    pass


@pytest.mark.slow
def test_interrupted_job_resumes_from_its_last_checkpoint(tiny_model_dir, train_parquet, tmp_path):
    cfg = _config(save_steps=5)

    def stop_at_six(event: dict) -> None:
        if event["step"] >= 6:  # checkpoint-5 is complete by now
            raise _Interrupt

    with pytest.raises(_Interrupt):
        launch_training(
            "sft", cfg, tiny_model_dir, train_parquet, tmp_path / "run", on_progress=stop_at_six
        )
    assert (tmp_path / "run" / "checkpoints" / "checkpoint-5").is_dir()
    assert not (tmp_path / "run" / "model").exists()

    events: list[dict] = []
    result = launch_training(
        "sft",
        cfg,
        tiny_model_dir,
        train_parquet,
        tmp_path / "run",
        resume=True,
        on_progress=events.append,
    )
    assert events[0]["step"] == 6  # resumed, not restarted
    assert result.metrics["global_step"] == 16
    # the last step, off the save interval, is not checkpointed: the model folder is its save
    kept = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("checkpoint-*"))
    assert kept == ["checkpoint-10", "checkpoint-15"], kept
    # the history carried over from the checkpoint covers the whole run
    assert [h["step"] for h in result.history if "loss" in h] == list(range(1, 17))


@pytest.mark.slow
def test_a_job_stopped_after_its_last_checkpoint_resumes_without_a_step_past_max_steps(
    tiny_model_dir, train_parquet, tmp_path
):
    # one process, 16 steps an epoch: the last checkpoint, 8, is in the middle of the epoch,
    # where transformers resumed would take step 9 before it checks max_steps
    cfg = _config(max_steps=8, save_steps=4)
    cfg.train.distributed.num_processes = 1
    run = tmp_path / "run"
    launch_training("sft", cfg, tiny_model_dir, train_parquet, run)
    assert (run / "checkpoints" / "checkpoint-8" / "trainer_state.json").is_file()
    # as if killed after its last checkpoint, before the final model and history were written
    shutil.rmtree(run / "model")
    for name in ("metrics.json", "history.json"):
        (run / name).unlink()

    events: list[dict] = []
    result = launch_training(
        "sft", cfg, tiny_model_dir, train_parquet, run, resume=True, on_progress=events.append
    )
    assert events[0]["step"] == 5  # from checkpoint-4: steps 5-8 trained again
    assert result.metrics["global_step"] == 8
    assert [h["step"] for h in result.history if "loss" in h] == list(range(1, 9))
    _assert_loadable(result.output_dir)


@pytest.mark.slow
def test_failing_job_raises_training_failed_with_the_log_tail(tiny_model_dir, tmp_path):
    with pytest.raises(TrainingFailed) as info:
        launch_training(
            "sft", _config(), tiny_model_dir, tmp_path / "missing.parquet", tmp_path / "bad"
        )
    message = str(info.value)
    assert "sft" in message and "exit code" in message
    assert str(tmp_path / "bad" / "train.log") in message
    assert "missing.parquet does not exist" in message  # from the job's own output


def test_unknown_method_is_a_config_error(tiny_model_dir, tmp_path):
    with pytest.raises(ConfigError, match="unknown training method"):
        launch_training("xyz", _config(), tiny_model_dir, tmp_path / "x.parquet", tmp_path / "out")


def test_command_lines_one_node_and_each_node_of_several(tmp_path):
    single = build_command(_config(), tmp_path / "job.json", 29555)
    assert single[1:3] == ["-m", "torch.distributed.run"]
    assert single[single.index("--nnodes") + 1] == "1"
    assert single[single.index("--nproc_per_node") + 1] == "2"
    assert single[single.index("--master_addr") + 1] == "127.0.0.1"
    assert single[single.index("--master_port") + 1] == "29555"
    assert single[-3:] == ["-m", "alignment.train.entry", str(tmp_path / "job.json")]

    multi_cfg = PipelineConfig.model_validate(
        {
            "train": {
                "distributed": {
                    "num_nodes": 4,
                    "node_rank": 3,
                    "num_processes": 8,
                    "rendezvous": "trainer-0.trainer:29400",
                    "rendezvous_timeout_seconds": 120,
                }
            }
        }
    )
    multi = build_command(multi_cfg, tmp_path / "job-node3.json", 29555)
    assert multi[multi.index("--nnodes") + 1] == "4"
    assert multi[multi.index("--node_rank") + 1] == "3"
    assert multi[multi.index("--nproc_per_node") + 1] == "8"
    # every node meets at node 0's address, not at a port of its own
    assert multi[multi.index("--master_addr") + 1] == "trainer-0.trainer"
    assert multi[multi.index("--master_port") + 1] == "29400"
    assert multi[multi.index("--rdzv_backend") + 1] == "static"
    assert multi[multi.index("--rdzv_conf") + 1] == "timeout=120"
    assert multi[multi.index("--max_restarts") + 1] == "0"


@pytest.mark.parametrize(
    ("distributed", "message"),
    [
        ({"num_nodes": 2}, "needs rendezvous"),
        ({"num_nodes": 2, "rendezvous": "node-0"}, "not host:port"),
        ({"num_nodes": 2, "rendezvous": "node-0:http"}, "not host:port"),
        ({"num_nodes": 2, "node_rank": 2, "rendezvous": "node-0:29400"}, "node_rank=2"),
        ({"node_rank": 1}, "not below num_nodes=1"),
    ],
)
def test_bad_multi_node_settings_name_the_field(distributed, message):
    from alignment.config import load_config

    overrides = [f"train.distributed.{key}={value}" for key, value in distributed.items()]
    with pytest.raises(ConfigError, match=message) as info:
        load_config(None, overrides)
    assert "train.distributed" in str(info.value)


def test_progress_line_shows_step_loss_speed_and_eta():
    line = format_progress(
        "dpo",
        {
            "step": 3,
            "max_steps": 10,
            "tokens_per_second": 1234.4,
            "eta_seconds": 75,
            "logs": {"loss": 0.5, "rewards/accuracies": 0.75, "rewards/margins": 0.2},
        },
    )
    assert (
        line
        == "[dpo] step 3/10  loss 0.5000  accuracies 0.750  margins 0.200  1234 tok/s  ETA 0:01:15"
    )


def test_shipped_two_node_job_is_the_same_on_kubernetes_and_slurm():
    import yaml

    from alignment.config import load_config

    root = Path(__file__).resolve().parents[2]
    shipped = load_config(root / "configs/distributed/two-nodes.yaml").train.distributed
    assert (shipped.num_nodes, shipped.num_processes, shipped.zero_stage) == (2, 8, 3)

    docs = list(yaml.safe_load_all((root / "infra/k8s/training-job.yaml").read_text()))
    kinds = {doc["kind"]: doc for doc in docs}
    job, service = kinds["Job"], kinds["Service"]
    in_cluster = yaml.safe_load(kinds["ConfigMap"]["data"]["two-nodes.yaml"])["train"]
    assert (
        in_cluster["distributed"]
        == yaml.safe_load((root / "configs/distributed/two-nodes.yaml").read_text())["train"][
            "distributed"
        ]
    )
    # one pod per node, all at once; pod 0's DNS name is the rendezvous host
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == shipped.num_nodes
    assert service["spec"]["clusterIP"] == "None"
    pod = job["spec"]["template"]["spec"]
    host, port = shipped.rendezvous_address()
    assert host == f"{job['metadata']['name']}-0.{pod['subdomain']}"
    assert pod["subdomain"] == service["metadata"]["name"]
    assert port in [p["port"] for p in service["spec"]["ports"]]
    container = pod["containers"][0]
    assert "--node-rank=$(JOB_COMPLETION_INDEX)" in container["args"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == shipped.num_processes

    sbatch = (root / "infra/slurm/train.sbatch").read_text()
    assert f"#SBATCH --nodes={shipped.num_nodes}" in sbatch
    assert f"#SBATCH --gpus-per-node={shipped.num_processes}" in sbatch
    assert '--node-rank "$SLURM_NODEID"' in sbatch and "--kill-on-bad-exit=1" in sbatch
    assert f'rendezvous="$HEAD:{port}"' in sbatch


def test_job_threads_split_the_cores_and_never_exceed_what_the_caller_set(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)))
    cfg = PipelineConfig.model_validate({"train": {"distributed": {"num_processes": 2}}})
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert job_environment(cfg)["OMP_NUM_THREADS"] == "4"  # 8 cores over 2 processes
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # e.g. one of two test workers on 2 cores
    assert job_environment(cfg)["OMP_NUM_THREADS"] == "1"
    monkeypatch.setenv("OMP_NUM_THREADS", "16")  # more than the job's share: the share
    assert job_environment(cfg)["OMP_NUM_THREADS"] == "4"
    monkeypatch.setenv("OMP_NUM_THREADS", "auto")  # not a count: ignored
    assert job_environment(cfg)["OMP_NUM_THREADS"] == "4"


def test_resume_passes_over_a_checkpoint_a_rank_did_not_finish_saving(tmp_path):
    import torch

    from alignment.train.entry import Job

    cfg = _config()  # two processes
    job = Job("sft", cfg, tmp_path, tmp_path, None, tmp_path / "run", resume=True, device="cpu")

    def checkpoint(step: int, ranks: dict[int, str]) -> None:
        path = job.checkpoints_dir / f"checkpoint-{step}"
        path.mkdir(parents=True)
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step, "max_steps": 16}))
        for rank, how in ranks.items():
            torch.save({"cpu": torch.random.get_rng_state()}, path / f"rng_state_{rank}.pth")
            if how == "cut":  # the rank was stopped while writing it
                data = (path / f"rng_state_{rank}.pth").read_bytes()
                (path / f"rng_state_{rank}.pth").write_bytes(data[: len(data) // 2])

    checkpoint(2, {0: "whole", 1: "whole"})
    checkpoint(4, {0: "whole", 1: "cut"})
    checkpoint(6, {0: "whole"})  # rank 1 never got to its RNG state
    assert job.last_checkpoint() == str(job.checkpoints_dir / "checkpoint-2")
    checkpoint(8, {0: "whole", 1: "whole"})
    assert job.last_checkpoint() == str(job.checkpoints_dir / "checkpoint-8")
    # saved without RNG states (save_only_model): nothing to check but the trainer state
    checkpoint(10, {})
    assert job.last_checkpoint() == str(job.checkpoints_dir / "checkpoint-10")
