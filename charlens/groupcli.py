"""analyze.py's runs over many models: two groups of seeds (--compare A... --vs B...), the four-condition
study (--study), and with --stages each model's snapshots analysed too (findings across training).

Every model is checked before any work, analysed on the same held-out windows (the same verses for the
default Bibles), and written with its own report into OUT/<model>/; the comparison goes to OUT; all of it
through one staged folder, so a failed run leaves no half report.
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from charlens.analysis.measures.attribution import CONDITIONS, MAIN
from charlens.analysis.report.folder import check_output_dir, staged_output_dir
from charlens.analysis.report.render import write_group_report, write_study_report
from charlens.analysis.runs.extras import ExtrasRequest, check_request
from charlens.analysis.runs.groups import compare_groups, model_quantities
from charlens.analysis.runs.inputs import AnalysisInputs, Settings, load_inputs, parallel_heldout
from charlens.analysis.runs.snapshots import STEP, snapshot_files
from charlens.analysis.runs.stages import StageValues, compare_stages
from charlens.analysis.runs.study import run_study as study_result
from charlens.data.errors import UsageError, visible
from charlens.groupjobs import Job, ModelJob, ModelResult, StageJob, live_view, run_jobs
from charlens.model.limits import cpu_cores


def warn_unknown(inputs: AnalysisInputs) -> None:
    """One line on stderr for characters --unknown-chars dropped or replaced (a warning for a foreign text)."""
    if inputs.unknown is not None:
        kind = "warning" if inputs.unknown.foreign else "note"
        print(f"analyze.py: {kind}: {visible(inputs.name)}: {visible(inputs.unknown.message())}", file=sys.stderr)


def live_entry(args: argparse.Namespace, inputs: AnalysisInputs) -> Optional[dict]:
    """The model for report.html's live view (None with --no-live-model)."""
    return None if args.no_live_model else live_view(inputs)


def expand_group(patterns: list[str], flag: str) -> list[str]:
    """Checkpoint paths from the arguments of --compare / --vs / --study: plain paths, or quoted shell globs. A glob
    leaves out the snapshots of the checkpoints it matches ('en_s*.pt' also matches en_s0.step250.pt): a snapshot is
    a stage of its model, not another seed (--stages analyses them); named one by one, a snapshot is taken as given."""
    paths = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            found = sorted(glob.glob(pattern))
            if not found:
                raise UsageError(f"{flag} {pattern}: no checkpoint matches")
            matched = set(found)
            paths += [p for p in found if not (STEP.search(Path(p).stem) and
                                               str(Path(p).with_name(STEP.sub("", Path(p).stem) + Path(p).suffix)) in matched)]
        else:
            paths.append(pattern)
    return paths


def check_group(name: str, members: list[AnalysisInputs]) -> None:
    """One group = one kind of model: the same architecture and the same training corpus."""
    first = members[0]
    text = lambda m: tuple(m.state["corpus"].get(k) for k in ("sha256", "keep_niqqud", "drop_vowels"))  # the source and its variant
    for m in members[1:]:
        if text(m) != text(first):
            raise UsageError(f"group {name} mixes corpora: {first.ckpt_path} and {m.ckpt_path} were trained on different texts")
        a, b = first.state["model_config"], m.state["model_config"]
        differ = [f"{k} {a.get(k)} vs {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        if differ:
            raise UsageError(f"group {name} mixes architectures: {first.ckpt_path} and {m.ckpt_path} differ in "
                             + ", ".join(differ))


def group_name(members: list[AnalysisInputs]) -> str:
    """The corpus name every member shares (e.g. en), else the common prefix of the file names."""
    corpora = {m.corpus.name if m.corpus else None for m in members}
    if len(corpora) == 1 and None not in corpora:
        return corpora.pop()  # type: ignore[return-value]
    prefix = os.path.commonprefix([m.name for m in members]).rstrip("_-.")
    return prefix or members[0].name


def prepare(groups: list[list[AnalysisInputs]], names: list[str], args: argparse.Namespace,
            request: ExtrasRequest, settings: Settings) -> list[list[AnalysisInputs]]:
    """Check every group and model; the same held-out verses for all (default Bibles); unique model names."""
    for name, group in zip(names, groups):
        check_group(name, group)
        for inputs in group:
            check_request(request, inputs.model, inputs.tokenizer)
            warn_unknown(inputs)
    if args.text is None and args.sentences is None:
        parallel = parallel_heldout([g[0] for g in groups], settings.n_windows, settings.seed)
        if parallel is not None:
            groups = [[dataclasses.replace(m, heldout=rep.heldout) for m in group] for group, rep in zip(groups, parallel)]
    seen: dict[str, int] = {}
    for group in groups:
        for k, m in enumerate(group):
            name = "_" + m.name if m.name.startswith(".") else m.name  # each model's folder: never hidden, never the manifest
            seen[name] = seen.get(name, 0) + 1
            group[k] = dataclasses.replace(m, name=name if seen[name] == 1 else f"{name}-{seen[name]}")
    return groups


def analyse_all(groups: list[list[AnalysisInputs]], tmp: Path, args: argparse.Namespace, settings: Settings,
                request: ExtrasRequest, staged: Sequence[int] = ()) -> tuple[list[list[dict]], list[list], StageValues]:
    """Every model's report into tmp/<model>/ and, for the groups numbered in `staged`, every snapshot's stage
    analysis into tmp/<model>/stages/step<k>.json, --procs at a time (groupjobs.py). Returns each model's summary
    dict and examples by group, and for each staged group, per model: {step: model_quantities} at each of its
    snapshots and at its final step."""
    stage_jobs = {(g, k): [StageJob.of(m, step, path, settings, tmp / m.name / "stages" / f"step{step}.json")
                           for step, path in snapshot_files(m.ckpt_path) if step < int(m.state.get("iter", 0))]
                  for g in staged for k, m in enumerate(groups[g])}
    model_jobs = [ModelJob(m, settings, request, tmp / m.name, not args.no_live_model) for group in groups for m in group]
    jobs: list[Job] = [*model_jobs, *(job for js in stage_jobs.values() for job in js)]
    results = iter(run_jobs(jobs, resolve_procs(args.procs, len(jobs)), args.quiet))
    models: list[list[ModelResult]] = [[next(results) for _ in group] for group in groups]
    values: list[list[dict[int, dict]]] = []
    for g in staged:
        values.append([])
        for k, (m, final) in enumerate(zip(groups[g], models[g])):
            steps = {int(m.state.get("iter", 0)): model_quantities(final.summary)}
            for stage in (next(results) for _ in stage_jobs[g, k]):
                if stage.quantities is None:
                    print(f"analyze.py: note: stage left out: {stage.note}", file=sys.stderr)
                else:
                    steps[stage.step] = stage.quantities
            values[-1].append(steps)
    return [[r.summary for r in group] for group in models], [[r.examples for r in group] for group in models], values


def resolve_procs(procs: Optional[int], n_jobs: int) -> int:
    """--procs, or by default one worker per CPU core, at most one per analysis."""
    return procs if procs is not None else max(1, min(n_jobs, cpu_cores()))


def links_to(groups: list[list[AnalysisInputs]]) -> list[dict]:
    return [{"text": f"{m.name}: full report", "href": f"{m.name}/report.html"} for group in groups for m in group]


def run_compare(args: argparse.Namespace, settings: Settings, request: ExtrasRequest) -> int:
    """--compare A [A ...] [--vs B [B ...]]: every model analysed on the same held-out windows (parallel verses for
    the default Bibles), each report under OUT/<model>/, and the group comparison under OUT; one staged folder."""
    if args.vs is None and len(args.compare) != 2:
        raise UsageError("--compare takes two checkpoints (A B), or two groups: --compare A [A ...] --vs B [B ...]")
    paths = (expand_group(args.compare[:1] if args.vs is None else args.compare, "--compare"),
             expand_group(args.compare[1:] if args.vs is None else args.vs, "--vs"))
    both = {str(Path(p).resolve()) for p in paths[0]} & {str(Path(p).resolve()) for p in paths[1]}
    if both:
        raise UsageError(f"{sorted(both)[0]} is in both groups")
    if args.out:
        check_output_dir(Path(args.out))  # before the checkpoints are read, as for --ckpt
    groups = [[load_inputs(p, settings, text_path=args.text, sentences=args.sentences) for p in group] for group in paths]
    names = [group_name(g) for g in groups]
    if names[0] == names[1]:
        names[1] += "-2"
    groups = prepare(groups, names, args, request, settings)
    out_dir = Path(args.out) if args.out else Path("reports") / f"{names[0]}_vs_{names[1]}"
    with staged_output_dir(out_dir) as tmp:
        written, examples, values = analyse_all(groups, tmp, args, settings, request, staged=(0, 1) if args.stages else ())
        comparison = compare_groups((names[0], names[1]), (written[0], written[1]), (examples[0], examples[1]),
                                    alpha=settings.alpha)
        stages = compare_stages((names[0], names[1]), values, settings.alpha) if args.stages else None
        write_group_report(comparison, tmp, links=links_to(groups), stages=stages)
    if not args.quiet:
        print("\n".join(map(visible, comparison.notes + (stages.notes + stages.findings if stages else ()))))
        print("replicated:\n" + ("\n".join(f"- {visible(f)}" for f in comparison.replicated) or "- none"))
        print(f"comparison written to {visible(str(out_dir))}/ (report.html, report.md, compare.json, figures; "
              f"one folder per model with its own report)")
    return 0


def run_study(args: argparse.Namespace, settings: Settings, request: ExtrasRequest) -> int:
    """--study CKPT...: the models of the four conditions (grouped by the corpus each was trained on), analysed on the
    same held-out verses; English vs Hebrew and the attribution of each finding to the script or the language."""
    if args.out:
        check_output_dir(Path(args.out))  # before the checkpoints are read
    everyone = [load_inputs(p, settings) for p in dict.fromkeys(expand_group(args.study, "--study"))]
    by_condition: dict[str, list[AnalysisInputs]] = {}
    for m in everyone:
        name = m.corpus.name if m.corpus else m.name
        if name not in CONDITIONS:
            raise UsageError(f"--study takes models of the four default-Bible conditions ({', '.join(CONDITIONS)}); "
                             f"{m.ckpt_path} was trained on {name}")
        by_condition.setdefault(name, []).append(m)
    missing = [c for c in CONDITIONS if c not in by_condition]
    if missing:
        raise UsageError(f"--study needs models of all four conditions; none of {', '.join(missing)} "
                         "(train.py --lang en --drop-vowels, --lang he --keep-niqqud)")
    names = list(CONDITIONS)
    groups = prepare([by_condition[c] for c in names], names, args, request, settings)
    out_dir = Path(args.out) if args.out else Path("reports") / "study"
    with staged_output_dir(out_dir) as tmp:
        main = [names.index(c) for c in MAIN]
        written, examples, values = analyse_all(groups, tmp, args, settings, request, staged=main if args.stages else ())
        study = study_result(dict(zip(names, written)), dict(zip(names, examples)), settings.alpha,
                             values if args.stages else None)
        write_study_report(study, tmp, links_to(groups))
    if not args.quiet:
        print("\n".join(map(visible, study.notes)))
        print("attributed:\n" + ("\n".join(f"- {a.verdict}: {visible(s)}" for a, s in study.findings()) or "- none"))
        print(f"study written to {visible(str(out_dir))}/ (report.html, report.md, study.json, figures; en_vs_he/ the full "
              "English-vs-Hebrew comparison; one folder per model with its own report)")
    return 0
