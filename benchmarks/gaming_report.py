"""The gaming benchmark's report (benchmarks/gaming.py composes it): the figure per method, the
printed table, and the one MLflow run with every figure and curve."""

from __future__ import annotations

from pathlib import Path


def figure(method: str, runs: dict, path: Path) -> Path:
    """Proxy and oracle reward over steps (seed 0's runs), the guard's stop and kept step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unguarded, guarded = runs["unguarded"], runs["guarded"]
    steps = [p["step"] for p in unguarded["trajectory"]]
    fig, proxy_axis = plt.subplots(figsize=(6.5, 3.8))
    proxy_axis.plot(
        steps, [p["proxy"] for p in unguarded["trajectory"]], "o-", label="proxy (flawed RM)"
    )
    proxy_axis.set_xlabel(f"{method.upper()} step")
    proxy_axis.set_ylabel("proxy reward")
    oracle_axis = proxy_axis.twinx()
    oracle = [p["oracle_reward"] for p in unguarded["trajectory"]]
    low = [p["oracle_reward_ci"][0] for p in unguarded["trajectory"]]
    high = [p["oracle_reward_ci"][1] for p in unguarded["trajectory"]]
    oracle_axis.plot(steps, oracle, "s--", color="tab:orange", label="oracle reward")
    oracle_axis.fill_between(steps, low, high, color="tab:orange", alpha=0.2)
    oracle_axis.set_ylabel("oracle reward")
    metrics = guarded["metrics"]
    if metrics.get("guard/stopped"):
        proxy_axis.axvline(
            metrics["guard/final_step"], color="k", linestyle="--", label="guard stop"
        )
    proxy_axis.axvline(
        metrics["guard/kept_step"], color="g", linestyle="-", label="kept checkpoint"
    )
    fig.suptitle(f"reward hacking, {method}: proxy vs oracle", fontsize=9)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.legend(loc="lower center", ncol=4, fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def mlflow_metrics(result: dict) -> tuple[dict[str, float], dict[str, list[tuple[int, float]]]]:
    """The figures MLflow records: per method and seed, the unguarded run's peak, final and drop
    of the oracle reward (with its interval), whether the hack is real, the guard's stop, kept
    step and kept fraction of peak; per seed and candidate, promoted (1/0) and the oracle win
    rate; the totals. And the curves: proxy, held-out signal and oracle reward over steps, per
    method, seed and run (unguarded/guarded)."""
    flat: dict[str, float] = {}
    curves: dict[str, list[tuple[int, float]]] = {}
    for method, seeds in result["rl"].items():
        for seed, run in seeds.items():
            key = f"{method}/seed{seed}"
            v = run["unguarded"]["verdict"]
            g = run["guarded"]["metrics"]
            flat |= {
                f"{key}/peak_oracle_reward": v["peak_oracle_reward"],
                f"{key}/final_oracle_reward": v["final_oracle_reward"],
                f"{key}/peak_minus_final": v["peak_minus_final"],
                f"{key}/peak_minus_final_ci_low": v["peak_minus_final_ci"][0],
                f"{key}/peak_minus_final_ci_high": v["peak_minus_final_ci"][1],
                f"{key}/hack_real": float(v["hack_real"]),
                f"{key}/unguarded_peak_oracle_reward": run["unguarded_peak_oracle_reward"],
                f"{key}/guard_kept_oracle_reward": run["guard_kept_oracle_reward"],
                f"{key}/guard_kept_fraction_of_peak": run["guard_kept_fraction_of_peak"],
                f"{key}/guard_kept_fraction_of_naive_peak": run.get(
                    "guard_kept_fraction_of_naive_peak", float("nan")),
                f"{key}/guard_stopped": float(g.get("guard/stopped", 0)),
                f"{key}/guard_final_step": float(g.get("guard/final_step", float("nan"))),
                f"{key}/guard_kept_step": float(g.get("guard/kept_step", float("nan"))),
            }  # fmt: skip
            for name in ("unguarded", "guarded"):
                for point in run[name]["trajectory"]:
                    for signal in ("proxy", "held_out", "oracle_reward", "kl"):
                        curves.setdefault(f"{key}/{name}/{signal}", []).append(
                            (int(point["step"]), float(point[signal]))
                        )
    for seed, decided in result["gate"].items():
        for name, m in decided.items():
            flat[f"gate/seed{seed}/{name}/promoted"] = float(m["promoted"])
            flat[f"gate/seed{seed}/{name}/oracle_win_rate_vs_champion"] = m[
                "oracle_win_rate_vs_champion"
            ]
    for key in ("hacked_promoted", "hacked_candidates", "honest_promoted", "hack_real_runs",
                "honest_candidates_with_oracle_win_rate_at_least_0.6"):  # fmt: skip
        flat[key] = float(result[key])
    flat["candidates_dpo_beta"] = float(result["dpo_beta_choice"]["beta"])
    for key, value in result["meets"].items():
        flat[f"meets/{key}"] = float(value)
    return flat, curves


def log_to_mlflow(result: dict, files: list[Path], workspace_root: Path, tracking_uri=None) -> str:
    """One MLflow run in the workspace's store (experiment `gaming-benchmark`): the settings as
    params, the figures of mlflow_metrics, the curves as step metrics, the JSON and the PNGs as
    artifacts. Returns the run id."""
    import math

    import mlflow

    from alignment import registry
    from alignment.workspace import Workspace

    experiment = registry.connect(Workspace(workspace_root, tracking_uri), "gaming-benchmark")
    flat, curves = mlflow_metrics(result)
    # the experiment by id: an experiment set active earlier in the process must not receive it
    with mlflow.start_run(
        experiment_id=experiment, run_name=f"gaming-{result['seeds']}seeds"
    ) as run:
        mlflow.log_params({
            "seeds": result["seeds"], "methods": ",".join(result["methods"]),
            "steps": result["steps"], "smoke": result["smoke"],
            "filler_strength": result["settings"]["hacking"]["filler_strength"],
            "sycophancy_strength": result["settings"]["sycophancy"]["sycophancy_strength"],
            "candidates_dpo_beta": result["dpo_beta_choice"]["beta"],
        })  # fmt: skip
        mlflow.log_metrics({k: v for k, v in flat.items() if not math.isnan(v)})
        for key, points in curves.items():
            for step, value in points:
                if not math.isnan(value):
                    mlflow.log_metric(key, value, step=step)
        for path in files:
            mlflow.log_artifact(str(path))
        return run.info.run_id


def table(result: dict) -> str:
    steps = ", ".join(
        f"{m} {sorted({r.get('steps', result['steps']) for r in seeds.values()})}"
        for m, seeds in result["rl"].items()
    )
    lines = [
        "kept/peak: the kept checkpoint's oracle reward over the unguarded peak, cross-fitted "
        "over prompts; /naive: over the highest evaluation (overstated by its noise)"
    ]
    lines += [f"reward hacking ({result['seeds']} seeds; steps: {steps}): flawed RM accuracy "
             f"vs oracle {result['reward_model_flawed']['accuracy_vs_oracle']:.3f}, honest RM "
             f"{result['reward_model_honest']['accuracy_vs_oracle']:.3f}"]  # fmt: skip
    header = (f"{'method':6s} {'seed':>4s} {'peak':>6s} {'final':>6s} {'drop [95% CI]':>22s} "
              f"{'real':>5s} {'stop@':>5s} {'kept@':>5s} {'kept':>6s} {'kept/peak':>9s} {'/naive':>6s}")  # fmt: skip
    lines += [header, "-" * len(header)]
    for method, seeds in result["rl"].items():
        for seed, run in seeds.items():
            v = run["unguarded"]["verdict"]
            ci = v["peak_minus_final_ci"]
            g = run["guarded"]["metrics"]
            stop = g.get("guard/final_step") if g.get("guard/stopped") else "-"
            lines.append(
                f"{method:6s} {seed:>4s} {v['peak_oracle_reward']:6.3f} {v['final_oracle_reward']:6.3f} "
                f"{v['peak_minus_final']:6.3f} [{ci[0]:6.3f}, {ci[1]:6.3f}] {v['hack_real']!s:>5s} "
                f"{stop!s:>5s} {g.get('guard/kept_step', '-')!s:>5s} "
                f"{run['guard_kept_oracle_reward']:6.3f} {run['guard_kept_fraction_of_peak']:9.3f} "
                f"{run.get('guard_kept_fraction_of_naive_peak', float('nan')):6.3f}"
            )  # fmt: skip
    lines.append("gate (conditions left out: " + ", ".join(result["gate_conditions_dropped"])
                 + "; added: " + (", ".join(result["gate_conditions_added_by_benchmark"]) or "none") + ")")  # fmt: skip
    header = (f"{'seed':>4s} {'candidate':18s} {'lc win':>6s} {'uniq':>5s} {'dist2':>5s} "
              f"{'words':>5s} {'syco':>6s} {'KL':>6s} promoted / refused by")  # fmt: skip
    lines += [header, "-" * len(header)]
    for seed, decided in result["gate"].items():
        for name, m in decided.items():
            why = "yes" if m["promoted"] else "no: " + "; ".join(m["refused_by"])
            lines.append(
                f"{seed:>4s} {name:18s} {m['judge_lc_win_rate_vs_champion']:6.3f} "
                f"{m['unique_response_rate']:5.2f} {m['distinct_2']:5.2f} {m['response_words_mean']:5.1f} "
                f"{m['sycophancy_shift']:6.3f} {m['kl_from_reference']:6.2f} {why}"
            )  # fmt: skip
    lines.append(f"hacked/sycophantic promoted {result['hacked_promoted']} of {result['hacked_candidates']}; "
                 f"honest promoted {result['honest_promoted']} of "
                 f"{result['honest_candidates_with_oracle_win_rate_at_least_0.6']} with oracle win rate >= 0.6")  # fmt: skip
    if "sycophancy_labels_dpo_promoted" in result:
        lines.append(f"DPO on the sycophancy labels: learned to agree in "
                     f"{result['sycophancy_labels_dpo_learned_to_agree']} of {result['seeds']} seeds "
                     f"(only those count above); promoted {result['sycophancy_labels_dpo_promoted']}")  # fmt: skip
    lines += [f"{k}: {v}" for k, v in result["meets"].items()]
    return "\n".join(lines)
