"""The GPU round (`python -m wavetyp.gpu_round`): every GPU check of the project as one list of
commands for a machine with one CUDA GPU, each in its own process under its own timeout (a
failure or timeout is recorded and the next step runs). In order (STEP_NAMES): the tests marked
cuda; a short run stopped by SIGTERM and resumed; sample in every mode; score, ood, demo; the
bench; sampling throughput; a time-boxed bf16 training round and its evaluation.

A wall-time budget holds for the whole round: each step's timeout is cut to what is left of it
minus the time promised to the steps after it (the training round and its evaluation), and a
step with no time left is recorded as skipped. The DRY sizes give the same steps on the CPU with
a tiny checkpoint and an FSDD subset (`dry_inputs`). Nothing here trains or samples itself.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from runpy import run_module

REPO = Path(__file__).resolve().parents[2]
STEP_NAMES = ("cuda-tests", "train-sigterm-resume", "sample-greedy", "sample-temperature",
              "sample-top-p", "sample-typical-p", "sample-beam", "sample-prime", "sample-mel-from",
              "score", "ood", "demo", "bench", "sampling", "train-round", "evaluate-round")
PRIME, MEL_FROM = "fsdd:7_lucas_1", "fsdd:6_theo_0"
# the dry run's few-thousand-parameter model (the sizes tests/conftest.py uses)
TINY = {"layers_per_stack": 3, "n_stacks": 2, "kernel_size": 2, "residual_channels": 8,
        "gate_channels": 8, "skip_channels": 8, "head_channels": 16, "n_digits": 10,
        "global_dim": 4, "n_mels": 8, "n_fft": 64, "hop_length": 16, "mel_channels": 8}


@dataclass(frozen=True)
class Sizes:
    """How big the steps are: extra flags and a timeout per step (a key ending in '-' covers the
    steps it begins), the sampling measurements [device, stream counts, steps], and the time
    promised to the training round beside its minutes, and to its evaluation."""
    flags: dict
    timeouts: dict
    sampling: tuple
    overhead_s: float

    def get(self, table: dict, name: str, default=()):
        return table.get(name, table.get(name.split("-")[0] + "-", default))


GPU = Sizes(
    flags={"sample-": ("--seconds", "0.25", "--num", "2"),
           "sample-beam": ("--beam", "4", "--seconds", "0.25"),
           "sample-prime": ("--prime-ms", "100", "--seconds", "0.25", "--num", "2"),
           "sample-mel-from": ("--num", "2"),
           "train-sigterm-resume": ("--max-steps", "400", "--ckpt-every", "25", "--batch-size", "16"),
           "ood": ("--train-files", "40", "--in-files", "40", "--per-set", "8", "--sets", "silence",
                   "noise-10dBFS", "tone-1kHz", "reversed", "--bootstrap", "1000",
                   "--eval-batches", "200", "--batch-sizes", "1", "5"),
           "bench": ("--config", "both", "--repeats", "1", "--in-process"),
           "train-round": ("--batch-size", "64", "--lr", "3e-4", "--warmup", "50", "--ckpt-every", "250")},
    timeouts={"cuda-tests": 150, "train-sigterm-resume": 120, "sample-": 60, "score": 60, "ood": 90,
              "demo": 120, "bench": 180, "sampling": 90, "train-round": 120, "evaluate-round": 150},
    sampling=(("cuda", (1, 16, 256), 2000), ("cpu", (1, 16), 1000)), overhead_s=45.0)

DRY = Sizes(
    flags={"sample-": ("--seconds", "0.02", "--num", "2", "--no-plot"),
           "sample-beam": ("--beam", "2", "--seconds", "0.02", "--no-plot"),
           "sample-prime": ("--prime-ms", "5", "--seconds", "0.02", "--num", "2", "--no-plot"),
           "sample-mel-from": ("--seconds", "0.05", "--num", "2", "--no-plot"),
           "train-sigterm-resume": ("--max-steps", "30", "--ckpt-every", "5", "--batch-size", "4",
                                    "--crop", "1000"),
           "ood": ("--train-files", "6", "--in-files", "6", "--per-set", "2", "--sets", "silence",
                   "tone-1kHz", "--bootstrap", "50", "--eval-batches", "5", "--batch-sizes", "1", "2"),
           "demo": ("--seconds", "0.02"), "bench": ("--quick", "--config", "shipped", "--in-process"),
           "train-round": ("--batch-size", "4", "--crop", "1000", "--lr", "3e-4", "--warmup", "50",
                           "--ckpt-every", "0"),
           "evaluate-round": ("--limit", "10")},
    timeouts={"cuda-tests": 90, "demo": 90, "bench": 90},
    sampling=(("cpu", (1, 16), 200),), overhead_s=20.0)


@dataclass
class Step:
    """One command (or, with `check`, a scripted check that runs several) and its limits.
    `promise_s` > 0 marks a step whose time the earlier steps must leave to it."""
    name: str
    argv: list[str]
    timeout: float
    promise_s: float = 0.0
    check: Callable[[Step, float, Path, Launcher], dict] | None = None


def result(step: Step, rc, seconds: float, timed_out: bool, output: str, command: str | None = None,
           skipped: str | None = None) -> dict:
    """A step's summary row; `output` keeps the log's last 2,000 characters, progress-bar
    redraws (\\r) collapsed to their last."""
    output = re.sub(r"[^\n]*\r(?!\n)", "", output.replace("\r\n", "\n"))[-2000:]
    return {"name": step.name, "command": command or shlex.join(step.argv), "rc": rc,
            "seconds": round(seconds, 2), "timed_out": timed_out, "skipped": skipped, "output": output}


PRELOAD = ["torch", "pytest", "wavetyp.sample", "wavetyp.score", "wavetyp.ood", "wavetyp.demo",
           "wavetyp.bench", "wavetyp.train", "wavetyp.evaluate"]


@dataclass
class Launcher:
    """Starts a step's command, output to a log file, in its own process group: a subprocess,
    or with `preload` (the dry run) a `python -m/-c` command in a process forked from a server
    that imported torch and the CLIs once (multiprocessing's forkserver), running the same argv
    through runpy without a torch import per step; `data` is then its WAVETYP_DATA and `threads`
    its torch threads (tiny models run fastest on one, above all on a busy machine)."""
    preload: bool = False
    data: str | None = None
    threads: int | None = None

    def start(self, argv: list[str], log: Path):
        main = sys.modules["__main__"]     # forked processes import the caller's main again
        importable = getattr(main.__spec__, "name", None) or Path(getattr(main, "__file__", "")).is_file()
        if self.preload and importable and argv[0] == sys.executable and argv[1] in ("-m", "-c"):
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(PRELOAD)
            proc = ctx.Process(target=run_python_args, args=(argv[1:], str(log), self.data, self.threads))
            proc.start()
            return proc
        with open(log, "a") as f:
            return subprocess.Popen(argv, cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)


def run_python_args(args: list[str], log: str, data: str | None, threads: int | None) -> None:
    """In a forked process: what `python *args` does (`-m MODULE ...` or `-c CODE ...`), in
    the repository root, stdout and stderr to `log`."""
    import torch

    from wavetyp.core.runtime import env_override
    os.setsid()
    os.chdir(REPO)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    if threads:
        torch.set_num_threads(threads)
    with env_override("WAVETYP_DATA", data) if data else nullcontext():
        if args[0] == "-m":
            sys.argv = [args[1], *args[2:]]
            if args[1].startswith("wavetyp."):
                sys.modules.pop(args[1], None)  # preloaded: run it afresh as __main__
            run_module(args[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = ["-c", *args[2:]]
            exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__"})  # noqa: S102


def wait(proc, timeout: float) -> int | None:
    """A subprocess's or forked process's exit code, or None while it still runs after timeout s."""
    if isinstance(proc, subprocess.Popen):
        try:
            return proc.wait(timeout=max(timeout, 0.01))
        except subprocess.TimeoutExpired:
            return None
    proc.join(max(timeout, 0.01))
    return proc.exitcode


def stop_group(proc) -> None:
    """SIGTERM the process group, SIGKILL it after 5 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        if wait(proc, 5) is not None:
            return


def run_command(argv: list[str], timeout: float, log: Path, launcher: Launcher
                ) -> tuple[int | None, float, bool, str]:
    """Run argv, output to `log` -> (rc, seconds, timed_out, output); rc None: timed out, stopped."""
    t0 = time.perf_counter()
    log.write_text("")
    proc = launcher.start(argv, log)
    rc = wait(proc, timeout)
    if rc is None:
        stop_group(proc)
    return rc, time.perf_counter() - t0, rc is None, log.read_bytes().decode(errors="replace")


# ---------------------------------------------------------------- the plan

@dataclass
class Plan:
    """The round's steps for one output folder (absolute), checkpoint and device: on a GPU
    Plan(out, ckpt, "cuda", GPU, minutes), the dry run Plan(out, tiny, "cpu", DRY, 0.03)."""
    out: Path
    checkpoint: str
    device: str
    sizes: Sizes
    minutes: float
    python: str = sys.executable

    def step(self, name: str, argv: list, **kw) -> Step:
        """A step: argv + the sizes' flags for it, under the sizes' timeout for it (plus kw's)."""
        argv = [str(a) for a in [*argv, *self.sizes.get(self.sizes.flags, name)]]
        extra = kw.pop("extra_s", 0.0)
        return Step(name, argv, float(self.sizes.get(self.sizes.timeouts, name, 60)) + extra, **kw)

    def cli(self, module: str, *args) -> list:
        return [self.python, "-m", f"wavetyp.{module}", *args]

    def steps(self) -> list[Step]:
        out, ck, dev, py = self.out, self.checkpoint, self.device, self.python
        common, samples, round_s = ("--checkpoint", ck, "--device", dev), out / "samples", self.minutes * 60
        brief = ("--device", dev, "--eval-every", "0", "--no-final-eval", "--no-progress")

        def sample(name, *args):
            return self.step(f"sample-{name}", self.cli("sample", *common, "--out", samples,
                                                        "--name", name, *args))
        steps = [
            self.step("cuda-tests", [py, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
                                     "tests/test_cuda.py"]),
            self.step("train-sigterm-resume", self.cli("train", "--init-from", ck, "--out",
                                                       out / "resume", *brief), check=sigterm_resume),
            sample("greedy", "--greedy"),
            sample("temperature", "--temperature", "0.7"),
            sample("top-p", "--top-p", "0.9"),
            sample("typical-p", "--typical-p", "0.9"),
            sample("beam"),
            sample("prime", "--prime", PRIME, "--temperature", "0.7"),
            sample("mel-from", "--mel-from", MEL_FROM, "--temperature", "0.7"),
            self.step("score", self.cli("score", *common, samples, "--json", out / "score.json")),
            self.step("ood", self.cli("ood", *common, "--out", out / "ood", "--quiet")),
            self.step("demo", self.cli("demo", *common, "--quick", "--out", out / "demo")),
            self.step("bench", self.cli("bench", *common, "--json", out / "bench.json")),
            self.step("sampling", [py, "-c", SAMPLING_CODE, json.dumps(
                {"checkpoint": ck, "out": str(out / "sampling.json"), "runs": self.sizes.sampling})]),
            self.step("train-round", self.cli("train", "--init-from", ck, "--out", out / "round",
                                              "--max-minutes", f"{self.minutes:g}", *brief),
                      extra_s=round_s, promise_s=round_s + self.sizes.overhead_s),
            self.step("evaluate-round", self.cli(
                "evaluate", "--checkpoint", out / "round" / "last.pt", "--device", dev,
                "--conditioning", "each", "--json", out / "round" / "eval.json"),
                promise_s=self.sizes.overhead_s),
        ]
        assert tuple(st.name for st in steps) == STEP_NAMES
        return steps


# ---------------------------------------------------------------- SIGTERM and --resume

def sigterm_resume(step: Step, timeout: float, log: Path, launcher: Launcher) -> dict:
    """Run step.argv (a fresh run with --out and --max-steps), SIGTERM it once last.pt exists,
    expect exit 0 and a `stopped (SIGTERM)` line, `--resume` it to the end, and check the
    step count last.pt holds."""
    from wavetyp.core.checkpoint import read_checkpoint
    argv = step.argv
    last = Path(argv[argv.index("--out") + 1]) / "last.pt"
    max_steps = int(argv[argv.index("--max-steps") + 1])
    resume = [argv[0], "-m", "wavetyp.train", "--resume", "--out", str(last.parent), "--device",
              argv[argv.index("--device") + 1], "--no-final-eval", "--no-progress"]
    t0, ok, deadline = time.perf_counter(), False, time.perf_counter() + timeout
    log.write_text("")
    proc = launcher.start(argv, log)
    while (rc := wait(proc, 0.02)) is None and not last.exists() and time.perf_counter() < deadline:
        pass
    if rc is None and last.exists():
        os.kill(proc.pid, signal.SIGTERM)      # not reaped yet, so still its pid
    if rc is None and (rc := wait(proc, deadline - time.perf_counter())) is None:
        stop_group(proc)
    output = log.read_bytes().decode(errors="replace")
    stopped = re.search(r"stopped \(SIGTERM\) at step (\d+)", output)
    if rc != 0:
        note = f"first run: exit {rc} (expected 0 after SIGTERM)"
    elif not stopped:
        note = "first run: no 'stopped (SIGTERM)' line (it finished before the signal?)"
    else:
        rc, _, _, second = run_command(resume, deadline - time.perf_counter(),
                                       log.with_suffix(".resume.log"), launcher)
        output += f"\n---- {shlex.join(resume)}\n{second}"
        got = read_checkpoint(last).get("step") if rc == 0 else None
        ok = got == max_steps
        note = (f"resume: exit {rc}" if rc != 0 else f"SIGTERM at step {stopped.group(1)}, "
                f"resumed to step {got} of {max_steps}" + ("" if ok else ": WRONG step count"))
    timed_out = not ok and time.perf_counter() >= deadline
    command = f"{shlex.join(argv)}  [SIGTERM once last.pt exists];  {shlex.join(resume)}"
    return result(step, 0 if ok else (None if timed_out else 1), time.perf_counter() - t0, timed_out,
                  f"{output}\n{note}", command)


# ---------------------------------------------------------------- sampling throughput

SAMPLING_CODE = ("import sys; from wavetyp.benchmark.gpu_round import sampling_main; "
                 "sys.exit(sampling_main(sys.argv[1]))")


def sampling_main(spec_json: str) -> int:
    """The `sampling` step, in its own process: generate() throughput (tau 0.7) per device and
    stream count after a warm-up, and the CUDA/CPU ratios -> spec["out"] (JSON)."""
    import torch

    from wavetyp.core.checkpoint import load_model
    from wavetyp.core.decoding import DecodeSettings
    from wavetyp.core.generate import generate

    spec, rows = json.loads(spec_json), []
    for device, streams, n in spec["runs"]:
        model = load_model(spec["checkpoint"], device)[0]
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        for b in streams:
            for steps in (min(n, 64), n):                  # warm-up (script, kernels), then timed
                sync()
                t = time.perf_counter()
                generate(model, [DecodeSettings(0.7)] * b, steps, seed=0)
                sync()
            dt = time.perf_counter() - t
            rate = b * n / dt
            rows.append({"device": device, "streams": b, "steps": n, "seconds": dt,
                         "samples_per_s": rate, "rtf": rate / model.cfg.sample_rate})
            print(f"{device:>6} {b:>4} streams x {n} steps: {dt:7.3f} s, {rate:12,.0f} samples/s", flush=True)
    by = {(r["device"].split(":")[0], r["streams"]): r["samples_per_s"] for r in rows}
    ratios = {f"cuda_over_cpu_{b}": by["cuda", b] / by["cpu", b]
              for (d, b) in by if d == "cuda" and ("cpu", b) in by}
    Path(spec["out"]).write_text(json.dumps({"checkpoint": spec["checkpoint"], "temperature": 0.7,
                                             "rows": rows, "ratios": ratios}, indent=2) + "\n")
    print(f"wrote {spec['out']}" + (f"; {json.dumps(ratios)}" if ratios else ""))
    return 0


# ---------------------------------------------------------------- the runner

def environment() -> dict:
    """torch, CUDA and GPU names (CUDA is asked only whether a device exists, and its name)."""
    import torch

    from wavetyp.core.runtime import cpu_model
    gpu = torch.cuda.is_available()
    return {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
            "gpu": torch.cuda.get_device_name(0) if gpu else None,
            "gpu_count": torch.cuda.device_count() if gpu else 0}


def run_plan(steps: list[Step], out: Path, budget_s: float, skip=(), launcher: Launcher | None = None,
             echo=print) -> list[dict]:
    """Run the steps in order under the wall-time budget; one result dict per step."""
    launcher, logs = launcher or Launcher(), out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    deadline, results = time.perf_counter() + budget_s, []
    for i, st in enumerate(steps):
        later = sum(s.promise_s for s in steps[i + 1:] if s.name not in skip)
        left = deadline - time.perf_counter() - later
        timeout = min(st.timeout, left)
        if st.name in skip or left < 5:
            why = "--skip" if st.name in skip else "the time budget is spent"
            results.append(result(st, None, 0.0, False, "", skipped=why))
        else:
            echo(f"[gpu_round {time.strftime('%H:%M:%S')}] {st.name} (timeout {timeout:.0f} s)")
            log = logs / f"{st.name}.log"
            results.append(st.check(st, timeout, log, launcher) if st.check else
                           result(st, *run_command(st.argv, timeout, log, launcher)))
        echo(f"    -> {status(results[-1])} in {results[-1]['seconds']:.1f} s")
    return results


def status(r: dict) -> str:
    if r["skipped"]:
        return "skipped"
    return "TIMED OUT" if r["timed_out"] else "ok" if r["rc"] == 0 else "FAILED"


def run_round(plan: Plan, info: dict, budget_s: float, skip=(), launcher: Launcher | None = None,
              dry_run: bool = False) -> dict:
    """Run the plan; write and return OUT/summary.json (settings, environment, every step)."""
    t0 = time.perf_counter()
    results = run_plan(plan.steps(), plan.out, budget_s, skip, launcher)
    summary = {"dry_run": dry_run, "device": plan.device, "checkpoint": plan.checkpoint,
               "minutes": plan.minutes, "budget_s": budget_s,
               "wall_s": round(time.perf_counter() - t0, 2), "environment": info, "steps": results}
    (plan.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


# ---------------------------------------------------------------- the dry run's inputs

def dry_inputs(out: Path, fsdd: Path) -> tuple[Path, Path]:
    """An FSDD subset (links to takes 0 and 5 of every digit and speaker, and to PRIME and
    MEL_FROM) and a tiny random checkpoint for its speakers -> (subset folder, checkpoint)."""
    import torch

    from wavetyp.core.checkpoint import FORMAT, VERSION, save_atomic
    from wavetyp.core.model import WaveNet, WaveNetConfig
    from wavetyp.data.fsdd import FSDD_NAME, recordings_dir

    named = {PRIME.split(":")[1] + ".wav", MEL_FROM.split(":")[1] + ".wav"}
    rec = out / "fsdd-subset" / "recordings"
    rec.mkdir(parents=True, exist_ok=True)
    speakers = set()
    for p in sorted(recordings_dir(fsdd).glob("*.wav")):
        m = FSDD_NAME.match(p.name)
        if m and (m.group(3) in ("0", "5") or p.name in named):
            (rec / p.name).symlink_to(p.resolve())
            speakers.add(m.group(2))
    torch.manual_seed(0)
    cfg = WaveNetConfig(**TINY, speakers=sorted(speakers))
    ckpt = out / "tiny.pt"
    save_atomic({"format": FORMAT, "version": VERSION, "config": cfg.to_dict(),
                 "model": WaveNet(cfg).state_dict(), "step": 0}, ckpt)
    return rec.parent, ckpt
