"""`python -m wavetyp.bench`: wavetyp's sampler and trainer against a reference-style WaveNet,
measured in one run on one machine.

Three sections, each measured in its own worker process (so peak RSS is per section and one
section's allocations cannot slow the next):

  reference                 the reference-style implementation (wavetyp/bench_reference.py)
                            on the issue's model: 16 layers, kernel 3, 64/2x64/64/64, ~566k
                            parameters, receptive field 1021;
  wavetyp_reference_config  wavetyp's own WaveNet + GenerationCache on the same model
                            (random weights): the like-for-like comparison;
  shipped                   wavetyp on the shipped checkpoint's config, plus the wall time
                            of `python -m wavetyp.sample --temperature 0.7` end to end.

The reference section also times, at one stream and when the package `wavenet_vocoder`
(r9y9's original, e.g. `pip install wavenet-vocoder`) can be imported, that package's own
`incremental_forward` on the same model as a cross-check of the reference (an optional
extra: nothing needs it installed).

For each: exactness first (incremental logits == parallel logits within 1e-4, else the run
stops), then incremental and naive (full forward over the receptive field per sample)
generation at B = 1 and B = 16, then a training step (batch 8 x 8000). Every timing is the
median of --repeats runs after a warm-up. Naive generation is a short run; its rate is
extrapolated from it. Training gets two warm-up steps for both implementations (reported):
wavetyp's first one compiles its fused gate (torch.compile; from the on-disk cache after the
first run), and the second still pages in memory that later steps reuse.

Threads: training uses torch's thread count (--threads). The reference's generation and both
naive paths run at whichever of 1 thread and that count was faster in the warm-up (giving
the reference its best case); wavetyp's sampler uses its own policy (1 thread below 64
streams). The chosen counts are reported.

Real-time factor (RTF) here = seconds of audio generated per wall-clock second, all streams
together, at the model's sample rate: > 1 is faster than real time.

`--profile` skips the timings and instead profiles ~200 incremental steps at B = 1 of
wavetyp's sampler (and of the reference, for its op count) and one training step of each,
printing the top ops and the share of the training step spent in matrix products.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from wavetyp.benchmark.reference import ReferenceConfig, ReferenceWaveNet
from wavetyp.benchmark.reference import train_step as reference_train_step
from wavetyp.core import faststack
from wavetyp.core.audio import N_CODES, SILENCE_CODE
from wavetyp.core.checks import add_common, check_count, check_new_file, run_cli
from wavetyp.core.conditioning import Conditioning
from wavetyp.core.errors import UsageError
from wavetyp.core.model import WaveNet, WaveNetConfig
from wavetyp.core.runtime import keep_freed_memory

SECTIONS = ("reference", "wavetyp_reference_config", "shipped")
SECTIONS_FOR = {"reference": SECTIONS[:2], "shipped": SECTIONS[2:], "both": SECTIONS}   # --config
TITLES = {"reference": "reference", "wavetyp_reference_config": "wavetyp (ref. config)",
          "shipped": "wavetyp (shipped)"}
TARGETS = {"incremental_b1": 16.0, "incremental_b16": 8.0, "train": 1.5}
TEMPERATURE = 0.7
EXACT_TOL = 1e-4
FALLBACK_CHECKPOINT = Path("checkpoints") / "run-fsdd" / "best.pt"   # until the shipped one exists

# the reference model, and a tiny one for --quick
REFERENCE_CONFIG = ReferenceConfig()
QUICK_REFERENCE_CONFIG = ReferenceConfig(layers_per_stack=3, n_stacks=2, kernel_size=3,
                                         residual_channels=16, gate_channels=16,
                                         skip_channels=16, end_channels=16)


class ExactnessError(AssertionError):
    """Incremental logits differ from the parallel pass: timings would be meaningless."""


@dataclass(frozen=True)
class Plan:
    """How long to measure. Step counts are calibrated so each timed run lasts ~*_target_s."""
    repeats: int = 3
    inc_warmup_steps: int = 100
    inc_target_s: float = 3.0
    inc_min_steps: int = 200
    naive_warmup_steps: int = 2
    naive_target_s: float = 2.0
    naive_min_steps: int = 3
    train_batch: int = 8
    train_len: int = 8000
    train_warmup: int = 2
    exact_extra: int = 64            # exactness over RF + this many steps, 2 streams
    sample_seconds: float | None = None   # None: the CLI's defaults (2 s x 4)
    sample_num: int | None = None
    sample_warmup: int = 1
    sample_plot: bool = True

    @classmethod
    def quick(cls) -> "Plan":
        return cls(repeats=1, inc_warmup_steps=4, inc_target_s=0.02, inc_min_steps=8,
                   naive_warmup_steps=1, naive_target_s=0.01, naive_min_steps=1,
                   train_batch=2, train_len=256, exact_extra=8, sample_seconds=0.05,
                   sample_num=2, sample_warmup=0, sample_plot=False)


def log(msg: str) -> None:
    """Progress line on stderr (stdout carries the results)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ================================================================ machine, models

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str) -> dict:
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "device": device, "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB.

    Linux: VmHWM of our own address space. ru_maxrss is not used there because exec()
    folds the spawning process's peak into it, so a worker or CLI started by a large
    process would report at least that process's peak. Elsewhere: ru_maxrss.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return rusage_mb(resource.getrusage(resource.RUSAGE_SELF))


def rusage_mb(ru) -> float:
    return ru.ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)   # bytes / KiB


def wavetyp_config_like(rc: ReferenceConfig) -> WaveNetConfig:
    """wavetyp's WaveNetConfig for the reference model (no conditioning, same widths)."""
    return WaveNetConfig(sample_rate=rc.sample_rate, layers_per_stack=rc.layers_per_stack,
                         n_stacks=rc.n_stacks, kernel_size=rc.kernel_size,
                         residual_channels=rc.residual_channels, gate_channels=rc.gate_channels,
                         skip_channels=rc.skip_channels, head_channels=rc.end_channels,
                         n_digits=0, speakers=[], n_mels=0)


def resolve_shipped(path: str | None) -> tuple[str | None, str]:
    """(checkpoint path or None = random default config, a note saying which)."""
    from wavetyp.core.checkpoint import SHIPPED
    if path:
        return str(path), f"checkpoint {path}"
    if SHIPPED.is_file():
        return str(SHIPPED), f"shipped checkpoint {SHIPPED.name}"
    fallback = SHIPPED.parent.parent / FALLBACK_CHECKPOINT
    if fallback.is_file():
        return str(fallback), (f"{SHIPPED.name} does not exist yet: using the training run's "
                               f"{FALLBACK_CHECKPOINT}")
    return None, "no checkpoint found: default WaveNetConfig with random weights"


def load_shipped(path: str | None, device) -> WaveNet:
    from wavetyp.core.checkpoint import load_model
    if path is None:
        torch.manual_seed(0)
        return WaveNet(WaveNetConfig()).eval().to(device)
    return load_model(path, device)[0]


# ================================================================ timing helpers

@contextmanager
def num_threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def measure_generation(run, batch: int, warmup_steps: int, target_s: float, min_steps: int,
                       max_steps: int, repeats: int, device, thread_options=None) -> dict:
    """Time run(batch, n_steps): warm-up (picking the fastest thread count when given
    several), calibrate n so one run takes ~target_s, then the median of `repeats` runs."""
    options = list(dict.fromkeys(thread_options or [None]))
    with num_threads(options[0] or torch.get_num_threads()):
        run(batch, warmup_steps)                      # first call: allocations, caches
    rates = {}
    probe = warmup_steps if len(options) == 1 else max(1, warmup_steps // 4)
    for th in options:
        with num_threads(th or torch.get_num_threads()):
            rates[th] = probe / timed(lambda: run(batch, probe), device)
    th = max(rates, key=rates.get)
    n = int(min(max_steps, max(min_steps, rates[th] * target_s)))
    with num_threads(th or torch.get_num_threads()):
        times = [timed(lambda: run(batch, n), device) for _ in range(repeats)]
    med = statistics.median(times)
    return {"steps": n, "batch": batch, "median_s": med, "runs_s": times,
            "samples_per_s": batch * n / med, "ms_per_step": 1000 * med / n,
            "threads": th if th is not None else "own policy"}


def measure_train(step, batch: int, length: int, warmup: int, repeats: int, device) -> dict:
    warm = [timed(step, device) for _ in range(warmup)]
    times = [timed(step, device) for _ in range(repeats)]
    med = statistics.median(times)
    return {"step_s": med, "runs_s": times, "warmup_s": warm, "samples_per_s": batch * length / med,
            "batch": batch, "length": length, "threads": torch.get_num_threads()}


# ================================================================ the two implementations

class ReferenceSubject:
    """The reference-style WaveNet: input buffers + linearized weights per step, one
    multinomial call per step for the whole batch."""
    gen_threads_own_policy = False

    def __init__(self, cfg: ReferenceConfig, device):
        torch.manual_seed(0)
        self.model = ReferenceWaveNet(cfg).eval().to(device)
        self.device = device
        self.sample_rate = cfg.sample_rate
        self.n_params, self.receptive_field = self.model.num_parameters, self.model.receptive_field
        self.config = asdict(cfg)

    def exactness(self, extra: int) -> float:
        codes = torch.randint(0, N_CODES, (2, self.receptive_field + extra), device=self.device)
        with torch.no_grad():
            par = self.model(F.one_hot(codes, N_CODES).float().transpose(1, 2))
        inc = self.model.teacher_forced_logits(codes)
        return (par - inc).abs().max().item()

    def incremental(self, batch: int, n: int):
        self.model.generate(batch, n, TEMPERATURE)

    def naive(self, batch: int, n: int):
        self.model.generate_naive(batch, n, TEMPERATURE)

    def original(self) -> "OriginalSubject | None":
        """The installed wavenet_vocoder package on this model, or None (not installed)."""
        return OriginalSubject.build(self.model.cfg, self.device)

    def train_step(self, batch: int, length: int):
        torch.manual_seed(0)
        model = ReferenceWaveNet(self.model.cfg).to(self.device).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        codes = torch.randint(0, N_CODES, (batch, length), device=self.device)
        return lambda: reference_train_step(model, opt, codes)


class OriginalSubject:
    """r9y9's wavenet_vocoder package, when importable: its WaveNet on the reference model
    (random weights, weight norm removed as its synthesis does), sampled one stream at a
    time with its own incremental_forward. A cross-check of the reference; optional."""

    def __init__(self, module, model, device):
        self.version = getattr(module, "__version__", "?")
        self.model, self.device = model, device

    @classmethod
    def build(cls, rc: ReferenceConfig, device) -> "OriginalSubject | None":
        try:
            import wavenet_vocoder
            ctor = wavenet_vocoder.WaveNet
        except Exception:                      # not installed, or it does not import here
            return None
        if rc.end_channels != rc.skip_channels:    # its head's hidden width is the skip width
            return None
        kwargs = dict(out_channels=rc.n_classes, layers=rc.layers_per_stack * rc.n_stacks,
                      stacks=rc.n_stacks, kernel_size=rc.kernel_size,
                      residual_channels=rc.residual_channels, gate_channels=2 * rc.gate_channels,
                      skip_out_channels=rc.skip_channels, cin_channels=-1, gin_channels=-1,
                      scalar_input=False, use_speaker_embedding=False)
        params = inspect.signature(ctor).parameters
        for name in ("weight_normalization", "legacy"):       # 0.1.x only
            if name in params:
                kwargs[name] = False
        torch.manual_seed(0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")    # its weight-norm and hook deprecations
                model = ctor(**kwargs)
                if hasattr(model, "make_generation_fast_"):
                    model.make_generation_fast_()
        except Exception as e:                 # an interface this code does not know
            log(f"cross-check skipped: wavenet_vocoder.WaveNet could not be built ({e})")
            return None
        return cls(wavenet_vocoder, model.eval().to(device), device)

    @torch.no_grad()
    def incremental(self, batch: int, n: int):
        assert batch == 1, "the cross-check samples one stream"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model.incremental_forward(T=n, softmax=True, quantize=True)


class WavetypSubject:
    """wavetyp's WaveNet: GenerationCache via generate(), the trainer's step."""
    gen_threads_own_policy = True

    def __init__(self, model: WaveNet, device):
        self.model = model.eval().to(device)
        self.device = device
        self.sample_rate = model.cfg.sample_rate
        self.n_params, self.receptive_field = model.num_parameters, model.receptive_field
        self.config = model.cfg.to_dict()

    def conditioning(self, codes: torch.Tensor, g: torch.Generator) -> Conditioning | None:
        """Every kind of conditioning the model has (labels, mel with some streams dropped)."""
        cfg, B = self.model.cfg, codes.shape[0]
        cond = Conditioning()
        if cfg.n_digits:
            cond.digit = torch.randint(-1, cfg.n_digits, (B,), generator=g).to(self.device)
        if cfg.speakers:
            cond.speaker = torch.randint(-1, len(cfg.speakers), (B,), generator=g).to(self.device)
        if cfg.n_mels:
            with torch.no_grad():
                cond.mel = self.model.log_mel(codes)
            cond.mel_present = (torch.arange(B) % 2 == 0).to(self.device)
        return cond

    def exactness(self, extra: int) -> float:
        from wavetyp.core.generate import teacher_forced_logits
        g = torch.Generator().manual_seed(0)
        codes = torch.randint(0, N_CODES, (2, self.receptive_field + extra), generator=g)
        codes = codes.to(self.device)
        cond = self.conditioning(codes, g)
        with torch.no_grad():
            par = self.model(codes, cond)
        if torch.device(self.device).type == "cpu":
            inc = teacher_forced_logits(self.model, codes, cond)
        else:   # teacher_forced_logits builds its buffers on the CPU: same loop, on the device
            inc = self._teacher_forced_on_device(codes, cond)
        return (par.float().cpu() - inc.float().cpu()).abs().max().item()

    @torch.inference_mode()
    def _teacher_forced_on_device(self, codes, cond):
        from wavetyp.core.cache import GenerationCache
        B, T = codes.shape
        cache = GenerationCache(self.model, B, cond)
        x = torch.full((B,), SILENCE_CODE, dtype=torch.long, device=self.device)
        out = []
        for t in range(T):
            out.append(cache.step(x).clone())
            x = codes[:, t]
        return torch.stack(out, 1)

    def incremental(self, batch: int, n: int):
        from wavetyp.core.decoding import DecodeSettings
        from wavetyp.core.generate import generate
        generate(self.model, [DecodeSettings(temperature=TEMPERATURE)] * batch, n)

    @torch.inference_mode()
    def naive(self, batch: int, n: int):
        """No cache: a full forward over the last receptive field for every sample."""
        gen = torch.Generator(device=self.device).manual_seed(0)
        rf = self.receptive_field
        # RF known codes + one placeholder: the last position's logits see exactly those RF
        window = torch.full((batch, rf + 1), SILENCE_CODE, dtype=torch.long, device=self.device)
        for _ in range(n):
            logits = self.model(window)[:, -1]
            x = torch.multinomial(F.softmax(logits / TEMPERATURE, -1), 1, generator=gen)
            window = torch.cat([window[:, 1:-1], x, window[:, -1:]], 1)

    def train_step(self, batch: int, length: int):
        """wavetyp's training step (train.py): forward, masked loss, backward, clip, AdamW."""
        from wavetyp.training.loop import masked_loss
        torch.manual_seed(0)
        model = WaveNet(self.model.cfg).to(self.device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0, betas=(0.9, 0.99))
        g = torch.Generator().manual_seed(0)
        codes = torch.randint(0, N_CODES, (batch, length), generator=g).to(self.device)
        mask = torch.ones(batch, length, device=self.device)
        cuda = torch.device(self.device).type == "cuda"

        def step():
            cond = self.conditioning(codes, g)        # as make_batch does, every step
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                logits = model(codes, cond)
            loss = masked_loss(logits, codes, mask)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            return loss.item()
        return step


# ================================================================ one section

def measure_section(subject, plan: Plan, device, label: str) -> dict:
    """Exactness, then generation (incremental, naive; B = 1, 16), then training."""
    res = {"n_params": subject.n_params, "receptive_field": subject.receptive_field,
           "sample_rate": subject.sample_rate, "config": subject.config}
    log(f"{label}: exactness (incremental vs parallel logits, 2 x {subject.receptive_field + plan.exact_extra})")
    with num_threads(1):      # untimed step loops of tiny ops: one thread is the safe choice
        err = subject.exactness(plan.exact_extra)
    if not err <= EXACT_TOL:
        raise ExactnessError(f"{label}: incremental logits differ from the parallel pass by {err:.3g} "
                             f"(tolerance {EXACT_TOL:g}); not timing a wrong sampler")
    res["exact_max_abs_diff"] = err
    all_threads = torch.get_num_threads()
    for batch in (1, 16):
        log(f"{label}: incremental generation, B={batch}")
        inc_threads = None if subject.gen_threads_own_policy else [1, all_threads]
        inc = measure_generation(subject.incremental, batch, plan.inc_warmup_steps, plan.inc_target_s,
                                 plan.inc_min_steps, 100_000, plan.repeats, device, inc_threads)
        log(f"{label}: naive generation (full forward per sample), B={batch}")
        nai = measure_generation(subject.naive, batch, plan.naive_warmup_steps, plan.naive_target_s,
                                 plan.naive_min_steps, 1000, plan.repeats, device, [1, all_threads])
        b = f"b{batch}"
        res[f"incremental_{b}_samples_per_s"] = inc["samples_per_s"]
        res[f"incremental_{b}_ms_per_step"] = inc["ms_per_step"]
        res[f"naive_{b}_samples_per_s"] = nai["samples_per_s"]
        res[f"naive_{b}_ms_per_step"] = nai["ms_per_step"]
        res[f"incremental_over_naive_{b}"] = inc["samples_per_s"] / nai["samples_per_s"]
        res[f"rtf_incremental_{b}"] = inc["samples_per_s"] / subject.sample_rate
        res[f"detail_incremental_{b}"] = inc
        res[f"detail_naive_{b}"] = nai
    original = subject.original() if hasattr(subject, "original") else None
    if original is not None:
        log(f"{label}: cross-check, wavenet_vocoder {original.version} incremental_forward, B=1")
        org = measure_generation(original.incremental, 1, plan.inc_warmup_steps, plan.inc_target_s,
                                 plan.inc_min_steps, 100_000, plan.repeats, device, [1, all_threads])
        res["original_version"] = original.version
        res["original_b1_samples_per_s"] = org["samples_per_s"]
        res["reference_over_original_b1"] = res["incremental_b1_samples_per_s"] / org["samples_per_s"]
        res["detail_original_b1"] = org
    res["peak_rss_generation_mb"] = peak_rss_mb()
    log(f"{label}: training step, batch {plan.train_batch} x {plan.train_len}")
    tr = measure_train(subject.train_step(plan.train_batch, plan.train_len), plan.train_batch,
                       plan.train_len, plan.train_warmup, plan.repeats, device)
    res["train_samples_per_s"] = tr["samples_per_s"]
    res["train_step_s"] = tr["step_s"]
    res["detail_train"] = tr
    res["peak_rss_mb"] = peak_rss_mb()
    return res


def build_subject(section: str, args, device):
    rc = QUICK_REFERENCE_CONFIG if args.quick else REFERENCE_CONFIG
    if section == "reference":
        return ReferenceSubject(rc, device)
    if section == "wavetyp_reference_config":
        torch.manual_seed(0)
        return WavetypSubject(WaveNet(wavetyp_config_like(rc)), device)
    path, _ = resolve_shipped(args.checkpoint)
    return WavetypSubject(load_shipped(path, device), device)


def run_section_here(section: str, args, plan: Plan) -> dict:
    subject = build_subject(section, args, args.device)
    return measure_section(subject, plan, args.device, TITLES[section])


def worker_argv(section: str, args, out: str) -> list[str]:
    argv = [sys.executable, "-m", "wavetyp.bench", "--worker", section, "--worker-out", out,
            "--repeats", str(args.repeats), "--device", args.device]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    if args.quick:
        argv.append("--quick")
    if args.checkpoint:
        argv += ["--checkpoint", str(args.checkpoint)]
    return argv


def run_section_isolated(section: str, args) -> dict:
    """The section in a fresh process (its own peak RSS); progress goes to our stderr."""
    with tempfile.TemporaryDirectory(prefix="wavetyp-bench-") as tmp:
        out = os.path.join(tmp, "result.json")
        rc = subprocess.call(worker_argv(section, args, out))
        if rc != 0:
            raise RuntimeError(f"section {section}: worker process failed (exit code {rc}); see above")
        return json.loads(Path(out).read_text())


# ================================================================ the sample CLI, end to end

def sample_cli_once(checkpoint: str | None, args, plan: Plan) -> tuple[float, float | None]:
    """Wall seconds and peak RSS (MiB) of one `python -m wavetyp.sample --temperature 0.7`."""
    with tempfile.TemporaryDirectory(prefix="wavetyp-bench-sample-") as out:
        cmd = [sys.executable, "-m", "wavetyp.sample", "--temperature", str(TEMPERATURE), "--out", out]
        if checkpoint:
            cmd += ["--checkpoint", checkpoint]
        if args.device != "cpu":
            cmd += ["--device", args.device]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        if plan.sample_seconds is not None:
            cmd += ["--seconds", str(plan.sample_seconds)]
        if plan.sample_num is not None:
            cmd += ["--num", str(plan.sample_num)]
        if not plan.sample_plot:
            cmd.append("--no-plot")
        with open(os.path.join(out, "stdout.txt"), "w+") as f:
            t0 = time.perf_counter()
            p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
            if hasattr(os, "wait4"):
                _, status, ru = os.wait4(p.pid, 0)   # the child's own rusage
                p.returncode = os.waitstatus_to_exitcode(status)
                rss = rusage_mb(ru)
            else:
                p.wait()
                rss = None
            wall = time.perf_counter() - t0
            if p.returncode != 0:
                f.seek(0)
                tail = f.read()[-2000:]
                raise RuntimeError(f"`{' '.join(cmd)}` failed (exit {p.returncode}):\n{tail}")
    return wall, rss


def measure_sample_cli(args, plan: Plan, sample_rate: int) -> dict:
    from wavetyp.core.checkpoint import FORMAT, VERSION, save_atomic
    path, note = resolve_shipped(args.checkpoint)
    with tempfile.TemporaryDirectory(prefix="wavetyp-bench-ckpt-") as tmp:
        if path is None:                      # no checkpoint anywhere: a random default one
            path = os.path.join(tmp, "random-default.pt")
            model = load_shipped(None, "cpu")
            save_atomic({"format": FORMAT, "version": VERSION, "config": model.cfg.to_dict(),
                         "model": model.state_dict(), "step": 0}, path)
        from wavetyp.core.checkpoint import SHIPPED
        cli_ckpt = None if Path(path).resolve() == SHIPPED.resolve() else path
        seconds = plan.sample_seconds if plan.sample_seconds is not None else 2.0
        num = plan.sample_num if plan.sample_num is not None else 4
        for i in range(plan.sample_warmup):
            log(f"sample CLI: warm-up run ({num} x {seconds:g} s)")
            sample_cli_once(cli_ckpt, args, plan)
        runs = []
        for i in range(plan.repeats):
            log(f"sample CLI: run {i + 1}/{plan.repeats} ({num} x {seconds:g} s)")
            runs.append(sample_cli_once(cli_ckpt, args, plan))
    wall = statistics.median(w for w, _ in runs)
    rss = [r for _, r in runs if r is not None]
    audio_s = num * max(1, int(round(seconds * sample_rate))) / sample_rate
    return {"sample_cli_wall_s": wall, "sample_cli_runs_s": [w for w, _ in runs],
            "sample_cli_audio_s": audio_s, "sample_cli_rtf": audio_s / wall,
            "sample_cli_peak_rss_mb": max(rss) if rss else None,
            "sample_cli_command": "python -m wavetyp.sample --temperature 0.7"
                                  + (f" --checkpoint {cli_ckpt}" if cli_ckpt else "")
                                  + ("" if plan.sample_seconds is None else
                                     f" --seconds {plan.sample_seconds:g} --num {num} --no-plot"),
            "checkpoint_note": note}


# ================================================================ ratios and the table

def ratios(results: dict) -> dict:
    """wavetyp over the reference on the same model (the targets), and shipped over reference."""
    ref, own, shipped = (results.get(s) for s in SECTIONS)
    out = {}
    if ref and own:
        for key, metric in (("incremental_b1", "incremental_b1_samples_per_s"),
                            ("incremental_b16", "incremental_b16_samples_per_s"),
                            ("train", "train_samples_per_s")):
            r = own[metric] / ref[metric]
            out[key] = {"ratio": r, "target": TARGETS[key], "pass": r >= TARGETS[key]}
        out["naive_b1"] = {"ratio": own["naive_b1_samples_per_s"] / ref["naive_b1_samples_per_s"]}
    if ref and shipped:
        for key in ("incremental_b1", "incremental_b16", "train"):
            metric = f"{key}_samples_per_s"
            out[f"shipped_{key}"] = {"ratio": shipped[metric] / ref[metric]}
    return out


ROWS = [  # (label, key, format)
    ("parameters", "n_params", "{:,.0f}"),
    ("receptive field (samples)", "receptive_field", "{:.0f}"),
    ("exactness max |inc - par|", "exact_max_abs_diff", "{:.1e}"),
    ("incremental B=1 (samples/s)", "incremental_b1_samples_per_s", "{:,.0f}"),
    ("  ms per step", "incremental_b1_ms_per_step", "{:.3f}"),
    ("  RTF (audio s per wall s)", "rtf_incremental_b1", "{:.2f}"),
    ("incremental B=16 (total samples/s)", "incremental_b16_samples_per_s", "{:,.0f}"),
    ("  ms per step", "incremental_b16_ms_per_step", "{:.3f}"),
    ("  RTF (audio s per wall s)", "rtf_incremental_b16", "{:.2f}"),
    ("wavenet_vocoder B=1 (cross-check)", "original_b1_samples_per_s", "{:,.0f}"),
    ("naive B=1 (samples/s, short run)", "naive_b1_samples_per_s", "{:,.1f}"),
    ("  ms per step", "naive_b1_ms_per_step", "{:.1f}"),
    ("naive B=16 (total, short run)", "naive_b16_samples_per_s", "{:,.1f}"),
    ("  ms per step", "naive_b16_ms_per_step", "{:.1f}"),
    ("incremental / naive, B=1", "incremental_over_naive_b1", "{:,.1f}x"),
    ("incremental / naive, B=16", "incremental_over_naive_b16", "{:,.1f}x"),
    ("training (samples/s)", "train_samples_per_s", "{:,.0f}"),
    ("  s per step", "train_step_s", "{:.2f}"),
    ("peak RSS, generation (MiB)", "peak_rss_generation_mb", "{:,.0f}"),
    ("peak RSS, incl. training (MiB)", "peak_rss_mb", "{:,.0f}"),
    ("sample CLI wall (s)", "sample_cli_wall_s", "{:.1f}"),
    ("  RTF (audio s per wall s)", "sample_cli_rtf", "{:.2f}"),
    ("  peak RSS (MiB)", "sample_cli_peak_rss_mb", "{:,.0f}"),
]


def thread_note(res: dict) -> str:
    inc = res["detail_incremental_b1"]["threads"], res["detail_incremental_b16"]["threads"]
    nai = res["detail_naive_b1"]["threads"], res["detail_naive_b16"]["threads"]
    return f"inc {inc[0]}/{inc[1]}, naive {nai[0]}/{nai[1]}, train {res['detail_train']['threads']}"


def train_note(res: dict) -> str:
    d = res["detail_train"]
    return (" ".join(f"{t:.2f}" for t in d["warmup_s"]) + " | "
            + " ".join(f"{t:.2f}" for t in d["runs_s"]))


def format_report(report: dict) -> str:
    secs = [s for s in SECTIONS if report.get(s)]
    m = report["machine"]
    lines = [f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, {m['threads']} threads, "
             f"device {m['device']}" + (f" ({m['gpu']})" if m.get("gpu") else "")
             + (f", load average at start {m['load_average_at_start']}" if m.get("load_average_at_start") else "")]
    if report.get("notes"):
        lines += [f"note: {n}" for n in report["notes"]]
    w0, w = 36, 22
    lines.append("")
    lines.append(f"{'':<{w0}}" + "".join(f"{TITLES[s]:>{w}}" for s in secs))
    for label, key, fmt in ROWS:
        vals = [report[s].get(key) for s in secs]
        if all(v is None for v in vals):
            continue
        lines.append(f"{label:<{w0}}" + "".join(
            f"{(fmt.format(v) if v is not None else '-'):>{w}}" for v in vals))
    lines.append("threads used (B=1/B=16): " + "; ".join(
        f"{TITLES[s]}: {thread_note(report[s])}" for s in secs))
    lines.append("training steps (s), warm-up | timed: " + "; ".join(
        f"{TITLES[s]}: {train_note(report[s])}" for s in secs))
    lines.append("RTF = seconds of audio generated per wall-clock second, all streams together "
                 "(> 1: faster than real time)")
    r = report.get("ratios") or {}
    if "incremental_b1" in r:
        lines.append("")
        lines.append("targets: wavetyp vs the reference implementation, same model, measured in this run")
        names = {"incremental_b1": "one stream (B=1) samples/s",
                 "incremental_b16": "16 streams, total samples/s", "train": "training samples/s"}
        for key, name in names.items():
            v = r[key]
            lines.append(f"  {name:<30} {v['ratio']:7.2f}x  (target >= {v['target']:g}x)  "
                         f"{'PASS' if v['pass'] else 'MISS'}")
    ref = report.get("reference") or {}
    if ref.get("original_b1_samples_per_s"):
        lines.append(f"cross-check: the installed wavenet_vocoder {ref['original_version']} "
                     f"(r9y9's original), one stream, its own incremental_forward: "
                     f"{ref['original_b1_samples_per_s']:,.0f} samples/s "
                     f"({ref['detail_original_b1']['threads']} thread(s)); the reference runs at "
                     f"{ref['reference_over_original_b1']:.2f}x of it in this run")
    if "shipped_incremental_b1" in r:
        lines.append("shipped model vs the reference (different models; for information): "
                     + ", ".join(f"{k.removeprefix('shipped_')} {r[k]['ratio']:.1f}x"
                                 for k in ("shipped_incremental_b1", "shipped_incremental_b16",
                                           "shipped_train")))
    return "\n".join(lines)


def json_ready(report: dict) -> dict:
    return json.loads(json.dumps(report, default=str))


# ================================================================ --profile

def profiler_activities(device: str) -> list:
    from torch.profiler import ProfilerActivity
    return [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])


def profile_sampler(args) -> str:
    """torch.profiler over ~200 incremental steps at B = 1: wavetyp (and the reference)."""
    from torch.profiler import profile
    steps = 40 if args.quick else 200
    acts = profiler_activities(args.device)
    out = []
    for section in SECTIONS_FOR[args.config]:
        name, subj = TITLES[section], build_subject(section, args, args.device)
        log(f"profile: {name}, {steps} incremental steps at B=1")
        subj.incremental(1, 20)                            # warm-up
        plain = timed(lambda: subj.incremental(1, steps), args.device)
        with profile(activities=acts) as prof:
            subj.incremental(1, steps)
        ka = prof.key_averages()
        events = sum(e.count for e in ka)
        out.append(f"== {name}: {steps} steps at B=1, {1000 * plain / steps:.3f} ms/step without "
                   f"the profiler; {events / steps:,.0f} profiler op events per step (nested "
                   "ops included)")
        out.append(ka.table(sort_by="self_cpu_time_total", row_limit=15))
    return "\n".join(out)


def profile_training(args) -> str:
    """torch.profiler over one training step (batch 8 x 8000) after two warm-up steps, with
    the matrix products summed apart from everything else."""
    from torch.profiler import profile
    plan = Plan.quick() if args.quick else Plan()
    B, T = plan.train_batch, plan.train_len
    acts = profiler_activities(args.device)
    out = []
    for section in SECTIONS_FOR[args.config]:
        subj = build_subject(section, args, args.device)
        step = subj.train_step(B, T)
        log(f"profile: {TITLES[section]}, one training step of {B} x {T}")
        step(), step()
        plain = timed(step, args.device)
        with profile(activities=acts) as prof:
            step()
        ka = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in ka) / 1e6
        gemm = sum(e.self_cpu_time_total for e in ka
                   if e.key in ("aten::mm", "aten::addmm", "aten::bmm", "aten::mkldnn_convolution",
                                "aten::convolution_backward")) / 1e6
        out.append(f"== {TITLES[section]}: training step {B} x {T}, {plain:.2f} s without the "
                   f"profiler; profiled {total:.2f} s of op time, of which matrix products / "
                   f"convolutions {gemm:.2f} s ({100 * gemm / max(total, 1e-9):.0f} %)")
        out.append(ka.table(sort_by="self_cpu_time_total", row_limit=15))
    return "\n".join(out)


# ================================================================ CLI

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m wavetyp.bench",
        description="Benchmark wavetyp's sampler and trainer against a reference-style WaveNet "
                    "in one run (see the module docstring for what is measured).")
    p.add_argument("--config", choices=["reference", "shipped", "both"], default="both",
                   help="reference: the issue's model with both implementations; shipped: "
                        "wavetyp on the shipped checkpoint (+ the sample CLI); both (default)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: tiny reference model, tiny lengths, 1 repeat")
    p.add_argument("--profile", action="store_true",
                   help="instead of timing: profile ~200 incremental steps at B=1 and one training "
                        "step, and print the top ops")
    p.add_argument("--in-process", action="store_true",
                   help="measure all sections in this process (faster start; peak RSS is then "
                        "the running maximum of the whole process)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.add_argument("--worker", choices=SECTIONS, default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    add_common(p)
    return p


def check_device(name: str) -> str:
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise UsageError(f"--device must be cpu or cuda[:N], got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda requested but CUDA is not available")
    return name


def main(argv=None) -> int:
    p = build_parser()

    def body(a):
        check_count("--repeats", a.repeats)
        check_count("--threads", a.threads)
        a.device = check_device(a.device)
        if a.threads:
            torch.set_num_threads(a.threads)
        if a.quick:
            a.repeats = 1
        plan = Plan.quick() if a.quick else Plan(repeats=a.repeats)
        # Every section, the reference included, runs with glibc keeping freed memory, as
        # `python -m wavetyp.train` does on the CPU: a process-wide setting any implementation
        # could use, so it is not counted as wavetyp's advantage.
        malloc_kept = keep_freed_memory()
        if a.worker:                                   # one section, results to a file
            res = run_section_here(a.worker, a, plan)
            Path(a.worker_out).write_text(json.dumps(json_ready(res)))
            return 0
        if a.json:
            check_new_file(a.json, a.overwrite)
        if a.profile:
            print(profile_sampler(a))
            print(profile_training(a))
            return 0
        sections = SECTIONS_FOR[a.config]
        report = {s: None for s in SECTIONS}
        report["machine"] = machine_info(a.device)
        report["notes"] = []
        report["machine"]["malloc_keeps_freed_memory"] = malloc_kept
        if malloc_kept:
            report["notes"].append("glibc malloc keeps freed memory in every section, the reference "
                                   "included (as `python -m wavetyp.train` does on the CPU)")
        if "shipped" in sections:
            report["notes"].append(resolve_shipped(a.checkpoint)[1])
        if a.device == "cpu":
            report["machine"]["faststack"] = faststack.enabled()
            report["notes"].append(
                "wavetyp trains with the hand-written residual-stack backward (faststack.py)"
                if report["machine"]["faststack"] else
                "WAVETYP_FASTSTACK=0: wavetyp trains with the plain autograd layer loop")
        if a.quick:
            report["notes"].append("--quick: tiny reference model and lengths, 1 repeat; "
                                   "timings are not meaningful")
        elif a.repeats < 3:
            report["notes"].append(f"--repeats {a.repeats}: fewer than 3 timed runs per median")
        log(f"sections: {', '.join(sections)}; {a.repeats} repeat(s) after a warm-up; "
            f"{torch.get_num_threads()} torch threads; "
            + ("in this process" if a.in_process else "one worker process per section"))
        t0 = time.perf_counter()
        try:
            for s in sections:
                report[s] = run_section_here(s, a, plan) if a.in_process else run_section_isolated(s, a)
            if report["shipped"]:
                report["shipped"].update(measure_sample_cli(a, plan, report["shipped"]["sample_rate"]))
        except ExactnessError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        report["ratios"] = ratios(report)
        report["machine"]["bench_wall_s"] = time.perf_counter() - t0
        if a.in_process:
            report["notes"].append("--in-process: peak RSS is the running maximum of one process, "
                                   "and the sample CLI's (its ru_maxrss) is at least this "
                                   "process's peak when it was started")
        print(format_report(report))
        if a.json:
            Path(a.json).write_text(json.dumps(json_ready(report), indent=2) + "\n")
            log(f"wrote {a.json}")
        return 0

    return run_cli(p, body, argv)


if __name__ == "__main__":
    sys.exit(main())
