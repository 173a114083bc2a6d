"""``kmh run SPEC|DIR... [--template T]``: the whole life of modules in disposable VMs, with reports."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from plumbum import cli

from harness.commands.run_options import check_run_options
from harness.kernels.presets import PRESETS, expand
from harness.lifecycle.interrupt import Interrupted, interruptible
from harness.lifecycle.runner import Runner, make_plan
from harness.lifecycle.spec import ModuleSpec, load_spec, spec_for_directory, spec_for_template
from harness.report import (
    ProgressPrinter,
    render_summary,
    use_color,
    write_html,
    write_json,
    write_junit,
    write_ktap,
)
from harness.templates import parse_assignments


class RunCommand(cli.Application):
    """Render, build, check, load, verify, unload and verify again: each module spec (TOML) or
    module directory, on each kernel target, in disposable QEMU VMs. Exit 0 when every module
    passes, 1 otherwise."""

    kernels = cli.SwitchAttr(["-k", "--kernel"], str, list=True, help="kernel target (repeatable)")
    preset = cli.SwitchAttr(
        "--kernels",
        str,
        help="a named set of kernels: "
        + "; ".join(f"{name} = {', '.join(suites)}" for name, suites in PRESETS.items()),
    )
    jobs = cli.SwitchAttr(["-j", "--jobs"], cli.Range(1, 16), default=1, help="VMs running in parallel")
    templates = cli.SwitchAttr(
        ["-t", "--template"], str, list=True, help="run a template with default expectations"
    )
    params = cli.SwitchAttr(
        ["-p", "--param"], str, list=True, help="template parameter key=value (with --template)"
    )
    junit = cli.SwitchAttr("--junit", str, help="write a JUnit XML report to this file")
    ktap = cli.SwitchAttr("--ktap", str, help="write a KTAP report to this file")
    json = cli.SwitchAttr("--json", str, help="write a JSON report to this file")
    html = cli.SwitchAttr("--html", str, help="write a self-contained HTML report (module x kernel grid)")
    werror = cli.Flag("--werror", help="treat compiler warnings as errors")
    isolate = cli.Flag("--isolate", help="boot a fresh VM for every module (default: share boots)")
    backend = cli.SwitchAttr(
        "--backend", cli.Set("qemu", "vagrant"), default="qemu", help="where modules run"
    )
    build_in_vm = cli.Flag("--build-in-vm", help="build inside the guest against its own headers (vagrant)")
    dry_run = cli.Flag("--dry-run", help="print the plan (module x kernel) and stop")
    cluster = cli.SwitchAttr(
        "--cluster", str, help="run on the Dask scheduler at tcp://HOST:PORT, or on local[:N] workers"
    )
    inject_faults = cli.Flag(
        "--inject-faults", help="fail each allocation of init in turn (debug kernels; spec key inject_faults)"
    )

    def main(self, *targets: str) -> int:
        check_run_options(
            self.params, self.templates, junit=self.junit, ktap=self.ktap, json=self.json, html=self.html
        )
        specs: list[ModuleSpec] = []
        for target in targets:
            path = Path(target)
            specs.append(spec_for_directory(path) if path.is_dir() else load_spec(path))
        assignments = parse_assignments(self.params)
        specs += [spec_for_template(name, params=assignments) for name in self.templates]
        if not specs:
            print("kmh run: name a spec, a module directory or --template NAME", file=sys.stderr)
            return 2
        kernels = [*(expand(self.preset) if self.preset else ()), *self.kernels]
        if self.inject_faults:
            specs = [dataclasses.replace(spec, inject_faults=True) for spec in specs]
        plan = make_plan(specs, kernels)
        if self.dry_run:
            print(plan.describe())
            return 0
        started = time.monotonic()
        interrupted: Interrupted | None = None
        with ProgressPrinter(sys.stderr, total=len(plan.items)) as progress:
            runner = Runner(
                jobs=self.jobs,
                werror=self.werror,
                isolate=self.isolate,
                backend=str(self.backend),
                build_in_vm=self.build_in_vm,
                on_step=progress.step,
                on_finished=progress.finished,
            )
            execute = runner.execute
            if self.cluster:  # Dask is imported only here: the local runner needs none
                from harness.cluster import cluster_runner

                execute = cluster_runner(self.cluster, runner, backend=str(self.backend)).execute
            try:
                with interruptible():
                    execute(plan)
            except Interrupted as signal:
                interrupted = signal
        runs = [item.run for item in plan.items]
        if interrupted is not None:
            print(f"kmh run: interrupted by {interrupted.name}; reporting what finished", file=sys.stderr)
        elapsed = time.monotonic() - started  # the wall clock: with -j N, runs overlap
        print(render_summary(runs, color=use_color(sys.stdout), elapsed=elapsed), end="")
        if self.junit:
            write_junit(runs, Path(self.junit), elapsed=elapsed)
        if self.ktap:
            write_ktap(runs, Path(self.ktap))
        if self.json:
            write_json(runs, Path(self.json), elapsed=elapsed)
        if self.html:
            write_html(runs, Path(self.html), elapsed=elapsed)
        if interrupted is not None:
            return interrupted.exit_code
        return 0 if all(run.verdict in ("pass", "skipped") for run in runs) else 1
