"""The ``guided_attention`` report: alignment speed and quality per arm (mean +- sd over seeds),
the free-running test's attention errors and distances, the inference window's share, the
intelligibility stage, the targets met or missed, and the alignment-vs-steps chart."""

from __future__ import annotations

import statistics
from typing import Any

from suite.report import Figure, Figures, mean_sd, pyplot

ARMS = ("guided", "unguided", "aligned")
STEPS_TARGET = 1500
UNGUIDED_FACTOR = 3


def _training(results: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in results["runs"]:
        if "stage" not in row:
            groups.setdefault(row.get("group") or row["name"], []).append(row)
    return groups


def _stage(results: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [row for row in results["runs"] if row.get("stage") == name]


def _values(rows: list[dict[str, Any]], key: str) -> list[float | None]:
    return [row["metrics"].get(key) for row in rows]


def _percent(rows: list[dict[str, Any]], key: str) -> str:
    return mean_sd(_values(rows, key), scale=100.0, decimals=1)


def _steps_to_align(rows: list[dict[str, Any]]) -> str:
    """Mean +- sd of the aligned seeds' steps, and how many seeds never aligned."""
    steps = [row["metrics"].get("val/steps_to_align") for row in rows]
    aligned = [s for s in steps if s is not None and s >= 0]
    never = sum(1 for s in steps if s is not None and s < 0)
    text = mean_sd(aligned, decimals=0) if aligned else "-"
    budget = max((row.get("steps") or 0) for row in rows)
    return text + (f" ({never} of {len(steps)} not within {budget})" if never else "")


def steps_to(curve: list[list[float]], level: float) -> int | None:
    """The first evaluation step whose accuracy is >= ``level`` and still is at the next."""
    for (step, acc), (_, after) in zip(curve, curve[1:], strict=False):
        if acc >= level and after >= level:
            return int(step)
    return None


def _steps_to_level(rows: list[dict[str, Any]], level: float) -> str:
    """Mean +- sd of the steps to ``level``, and how many seeds never reached it; runs with no
    alignment curve (character input: flite times phones, not characters) are not scored."""
    curves = [r["curves"]["val/align_acc"] for r in rows if r.get("curves", {}).get(
        "val/align_acc")]
    found = [steps_to(curve, level) for curve in curves]
    reached = [s for s in found if s is not None]
    never = len(found) - len(reached)
    return ((mean_sd(reached, decimals=0) if reached else "-")
            + (f" ({never} of {len(found)} never)" if never else ""))


def alignment_table(groups: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = ["| run | seeds | steps to align (90%) | steps to 80% | val align acc % | focus rate "
             "| diagonality | entropy (nats) | val mel L1 | train min |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, rows in groups.items():
        minutes = [r["train_seconds"] / 60 for r in rows if r.get("train_seconds")]
        lines.append(
            f"| {name} | {len(rows)} | {_steps_to_align(rows)} | {_steps_to_level(rows, 0.8)} "
            f"| {_percent(rows, 'val/align_acc')} "
            f"| {mean_sd(_values(rows, 'val/focus_rate'), decimals=3)} "
            f"| {mean_sd(_values(rows, 'val/diagonality'), decimals=3)} "
            f"| {mean_sd(_values(rows, 'val/attention_entropy'), decimals=2)} "
            f"| {mean_sd(_values(rows, 'val/mel_l1'), decimals=3)} "
            f"| {mean_sd(minutes, decimals=1)} |")
    return lines


def free_running(results: dict[str, Any], synthesis: str = "windowed"
                 ) -> dict[str, list[dict[str, Any]]]:
    """The ``free-running`` stage's rows of one synthesis condition (``windowed``,
    ``windowless``, ``by-phrase``), by the trained run's group."""
    group_of = {row["name"]: row.get("group") or row["name"] for row in results["runs"]
                if "stage" not in row}
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in _stage(results, "free-running"):
        if row.get("synthesis") == synthesis:
            groups.setdefault(group_of.get(row["run"], row["run"]), []).append(row)
    return groups


def test_table(groups: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = ["| run | seeds | short: any error % | skip / repeat / early / overrun % | long: any "
             "error % | median duration error % (short / long) | mel L1 (DTW) | MCD dB | RTF |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, rows in groups.items():
        kinds = " / ".join(_percent(rows, f"test/{k}_short")
                           for k in ("skip", "repeat", "early_stop", "overrun"))
        lines.append(
            f"| {name} | {len(rows)} | {_percent(rows, 'test/any_error_short')} | {kinds} "
            f"| {_percent(rows, 'test/any_error_long')} "
            f"| {_percent(rows, 'test/duration_error_median_short')} / "
            f"{_percent(rows, 'test/duration_error_median_long')} "
            f"| {mean_sd(_values(rows, 'test/mel_l1_short'), decimals=3)} "
            f"| {mean_sd(_values(rows, 'test/mcd_short'), decimals=2)} "
            f"| {mean_sd(_values(rows, 'test/rtf'), decimals=3)} |")
    return lines


def synthesis_table(results: dict[str, Any]) -> list[str]:
    """Items with an attention error under each synthesis condition, per run group."""
    by_condition = {name: free_running(results, name)
                    for name in ("windowed", "windowless", "by-phrase")}
    if not by_condition["windowless"] and not by_condition["by-phrase"]:
        return []
    lines = ["| run | short: any error % (window on / off / by phrase) | long: any error % "
             "(on / off / by phrase) | long: median duration error % (on / by phrase) |",
             "|---|---|---|---|"]
    for name in by_condition["windowed"]:
        rows = [group.get(name, []) for group in by_condition.values()]
        short, long = (" / ".join(_percent(r, f"test/any_error_{kind}") for r in rows)
                       for kind in ("short", "long"))
        duration = " / ".join(_percent(r, "test/duration_error_median_long")
                              for r in (rows[0], rows[2]))
        lines.append(f"| {name} | {short} | {long} | {duration} |")
    return lines


def skip_rule_table(results: dict[str, Any]) -> list[str]:
    """Each run's free-running skip rate beside the rule's floor (the ``skip-rule`` stage)."""
    windowed = {row["run"]: row for row in _stage(results, "free-running")
                if row.get("synthesis") == "windowed"}
    rows = _stage(results, "skip-rule")
    if not rows:
        return []
    lines = ["| run | short: free-running (window on) % | short: teacher forced % | short: "
             "flite's true alignment % | long: teacher forced % | long: flite's true "
             "alignment % |", "|---|---|---|---|---|---|"]
    for row in rows:
        free = windowed.get(row["run"], {}).get("metrics", {}).get("test/skip_short")
        floors = [_percent([row], f"test/skip_{kind}_{split}")
                  for split in ("short", "long") for kind in ("teacher_forced", "true_alignment")]
        lines.append(" | ".join([f"| {row['run']}", "-" if free is None else f"{100 * free:.1f}",
                                 *floors]) + " |")
    return lines


def intelligibility_table(results: dict[str, Any]) -> list[str]:
    rows = _stage(results, "intelligibility")
    if not rows:
        return []
    lines = ["| run | items | CER flite % | CER Griffin-Lim of true mel % | CER ours % | "
             "ours / flite | ours - flite per item (95% CI) | WER flite / true mel / ours % | "
             "RTF (1 thread, with vocoder) |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        m = row["metrics"]
        lines.append(
            f"| {row['name'].removeprefix('intelligibility-')} | {int(m['utterances'])} "
            f"| {100 * m['test/cer_flite']:.1f} | {100 * m['test/cer_griffin_lim_true']:.1f} "
            f"| {100 * m['test/cer_ours']:.1f} | {m['test/cer_ratio_to_flite']:.2f} "
            f"| {100 * m['test/cer_diff_mean']:+.1f} ({100 * m['test/cer_diff_ci_low']:+.1f}, "
            f"{100 * m['test/cer_diff_ci_high']:+.1f}) "
            f"| {100 * m['test/wer_flite']:.1f} / {100 * m['test/wer_griffin_lim_true']:.1f} / "
            f"{100 * m['test/wer_ours']:.1f} | {m['test/rtf_one_thread']:.3f} |")
    return lines


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [v for v in _values(rows, key) if v is not None]
    return statistics.fmean(values) if values else None


def targets(results: dict[str, Any], groups: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Each target with its measured value and met / missed / not measured."""
    lines = ["| target | measured | verdict |", "|---|---|---|"]

    def add(name: str, measured: str, ok: bool | None) -> None:
        lines.append(f"| {name} | {measured} | "
                     f"{'not measured' if ok is None else 'met' if ok else 'missed'} |")

    guided, unguided = groups.get("guided", []), groups.get("unguided", [])
    steps = [s for s in _values(guided, "val/steps_to_align") if s is not None]
    aligned = [s for s in steps if s >= 0]
    ok = bool(steps) and len(aligned) == len(steps) and statistics.fmean(aligned) <= STEPS_TARGET
    add(f"guided aligns within {STEPS_TARGET} steps (every seed)", _steps_to_align(guided)
        if guided else "-", ok if steps else None)
    u_steps = [s for s in _values(unguided, "val/steps_to_align") if s is not None]
    if u_steps and steps:
        u_aligned = [s for s in u_steps if s >= 0]
        label = f"unguided takes >= {UNGUIDED_FACTOR}x as many steps, or never aligns"
        if not u_aligned:
            add(label, "unguided never aligned within the budget", True)
        elif not aligned:
            add(label, f"unguided aligned ({_steps_to_align(unguided)}), guided did not", False)
        else:
            ratio = statistics.fmean(u_aligned) / statistics.fmean(aligned)
            never = len(u_steps) - len(u_aligned)
            add(label, f"{ratio:.1f}x" + (f" over the unguided seeds that aligned; {never} of "
                                          f"{len(u_steps)} never did" if never else ""),
                ratio >= UNGUIDED_FACTOR and not never)
    on, off, phrased = (free_running(results, condition).get("guided", [])
                        for condition in ("windowed", "windowless", "by-phrase"))
    for key, bound, label in (("test/any_error_short", 0.02, "short items with an attention "
                               "error (windowed) <= 2%"),
                              ("test/any_error_long", 0.10, "long items with an attention "
                               "error <= 10%"),
                              ("test/duration_error_median_short", 0.10,
                               "median duration error <= 10%")):
        value = _mean(on, key)
        add(label, "-" if value is None else f"{100 * value:.1f}%",
            None if value is None else value <= bound)
    value = _mean(off, "test/any_error_short")
    add("short items with an attention error (no window) <= 5%",
        "-" if value is None else f"{100 * value:.1f}%", None if value is None else value <= 0.05)
    value = _mean(phrased, "test/any_error_long")
    add("long items with an attention error <= 10%, synthesised phrase by phrase",
        "-" if value is None else f"{100 * value:.1f}%", None if value is None else value <= 0.10)
    heard = [r for r in _stage(results, "intelligibility")
             if r["name"].startswith("intelligibility-guided")]
    ratio = _mean(heard, "test/cer_ratio_to_flite")
    add("pocketsphinx CER on our audio <= 1.5x on flite's", "-" if ratio is None
        else f"{ratio:.2f}x", None if ratio is None else ratio <= 1.5)
    rtf = _mean(heard, "test/rtf_one_thread")
    add("synthesis faster than real time on one core (RTF < 1)",
        "-" if rtf is None else f"{rtf:.3f}", None if rtf is None else rtf < 1)
    return lines


def analysis(results: dict[str, Any]) -> str:
    groups = _training(results)
    parts = ["## Alignment while training (teacher forced, 64 validation utterances)", "",
             "Alignment accuracy: the monitored head's most attended phone is within one phone "
             "of the phone flite was speaking at that decoder step (guided runs: the more "
             "focused guided head; unguided: the most focused head of any layer). Steps to align:"
             " the first evaluation at >= 90% that still holds at the next (80%: the same at "
             "that level, read from the curves).", "",
             *alignment_table(groups), "", "![alignment accuracy against training steps]"
             "(alignment_vs_steps.png)", "",
             "## Free-running test (200 held-out sentences, 50 long items, window on)", "",
             "The `free-running` stage's rows: each run's best checkpoint re-tested with the "
             "current synthesis code. Errors per item: skip (a phone before the furthest peak "
             "that no step gave 10% of its attention), repeat (the peak moves back by more than "
             "one phone), early stop (generation ends before the last three tokens), overrun "
             "(hit the cap of twice the expected length)."
             " Duration error: |our frames / flite's - 1|. Mel L1 and mel-cepstral distance after"
             " DTW against flite's mel. RTF: batched free-running decoding seconds per second of "
             "audio, vocoder excluded.", "", *test_table(free_running(results)), ""]
    conditions = synthesis_table(results)
    if conditions:
        parts += ["## The monotonic inference window, and phrase-by-phrase synthesis", "",
                  "By phrase: the text is cut at its inner pauses, each phrase (pause to pause,"
                  " EOS appended) is synthesised on its own, windowed, and the audio joined - "
                  "as long-form TTS systems do; attention errors are scored on the joined "
                  "alignment over the whole text.", "", *conditions, ""]
    floor = skip_rule_table(results)
    if floor:
        parts += ["## How often the skip rule fires where nothing is skipped", "",
                  "The `skip-rule` stage applies the same rule to the held-out items' "
                  "teacher-forced attention (the model reading flite's own frames, so the "
                  "audio skips nothing) and to flite's true alignment as a one-hot map (a "
                  "sounding phone shorter than a decoder step is the true phone of no step). "
                  "Read the free-running skip rate against these floors.", "", *floor, ""]
    heard = intelligibility_table(results)
    if heard:
        parts += ["## Intelligibility (pocketsphinx, the short held-out sentences)", "",
                  *heard, ""]
    parts += ["## Targets", "", *targets(results, groups), ""]
    return "\n".join(parts)


def charts(results: dict[str, Any]) -> dict[str, Any]:
    """Validation alignment accuracy against training steps: each seed thin, each run's mean
    bold."""
    fig, ax = pyplot().subplots(figsize=(7, 4.2))
    for index, (name, rows) in enumerate(_training(results).items()):
        color = f"C{index}"
        curves = [row.get("curves", {}).get("val/align_acc", []) for row in rows]
        curves = [c for c in curves if c]
        for curve in curves:
            ax.plot(*zip(*curve, strict=True), color=color, alpha=0.3, linewidth=0.8)
        if curves:
            length = min(len(c) for c in curves)
            steps = [c[0] for c in curves[0][:length]]
            mean = [statistics.fmean(c[i][1] for c in curves) for i in range(length)]
            ax.plot(steps, mean, color=color, linewidth=2, label=f"{name} ({len(curves)})")
    ax.axhline(0.9, color="grey", linestyle="--", linewidth=0.8)
    ax.set(xlabel="training step", ylabel="validation alignment accuracy", ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return {"alignment_vs_steps.png": fig}


def figures(results: dict[str, Any]) -> Figures:
    """The first seed's attention of each arm at the same (last) step, a long held-out item,
    and audio to listen to."""
    shown = [f"{arm}-s0" for arm in ARMS]
    items = [Figure(run, "val_attention.png", f"{run}_attention.png", f"{run} attention",
                    f"{run}: cross-attention of the last two decoder layers, validation "
                    "utterance, last step") for run in shown]
    items += [Figure("guided-s0", f"test_example_{name}.png", f"guided-s0_{name}.png",
                     f"guided-s0 {name} item", f"guided-s0: a {name} held-out item, "
                     "free-running (true mel, ours, attention)") for name in ("short", "long")]
    items += [Figure(run, "test_audio_short.wav", f"{run}_short.wav",
                     f"listen: {run}, a short held-out item (Griffin-Lim)") for run in shown]
    return Figures("What the models attend to, and how they sound", items)
